"""The house plan (docs/ARCHITECTURE.md): each module imports only from its own floor or below,
the packages import each other in one direction, and reading files or opening cameras never
loads torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "livedream"

# Bottom to top; a module's floor is that of the longest prefix listed.
FLOORS = {
    "ground": ["livedream.errors", "livedream.lazy", "livedream.frame", "livedream.progress",
               "livedream.models", "livedream.io"],
    "engine": ["livedream.config", "livedream.devices", "livedream.dream", "livedream.temporal",
               "livedream.student"],
    "pipeline": ["livedream.pipeline", "livedream.control", "livedream.adaptive"],
    "sessions": ["livedream.live", "livedream.farm", "livedream.bench", "livedream.video_job",
                 "livedream.distill"],
    "faces": ["livedream.cli", "livedream.server", "livedream.__main__"],
}
ORDER = list(FLOORS)


def floor_of(module: str) -> str | None:
    best = None
    for floor, prefixes in FLOORS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                    best is None or len(prefix) > len(best[1])):
                best = (floor, prefix)
    return None if best is None else best[0]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> set[str]:
    """Every livedream module `path` imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("livedream")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("livedream"):
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # `from livedream.io import video`
    known = modules()
    return {n for n in names if n in known}


def test_every_module_has_a_floor():
    assert not [m for m in modules() if m != "livedream" and floor_of(m) is None]


def test_no_module_imports_from_a_floor_above_its_own():
    wrong = []
    for name, path in modules().items():
        if name == "livedream":  # the package's facade re-exports the public names
            continue
        mine = ORDER.index(floor_of(name))  # type: ignore[arg-type]
        for target in imports(path):
            if target != "livedream" and ORDER.index(floor_of(target)) > mine:  # type: ignore[arg-type]
                wrong.append(f"{name} ({ORDER[mine]}) imports {target} ({floor_of(target)})")
    assert not wrong, "\n".join(wrong)


def test_packages_import_each_other_in_one_direction():
    def package(name: str) -> str:
        return ".".join(name.split(".")[:2])

    edges = {(package(name), package(t)) for name, path in modules().items() for t in imports(path)
             if package(t) != package(name) and name != "livedream"}
    loops = sorted(f"{a} <-> {b}" for a, b in edges if (b, a) in edges and a < b)
    assert not loops, loops


@pytest.mark.parametrize("module", sorted(m for m in modules() if floor_of(m) == "ground"
                                          and not m.startswith("livedream.models")))
def test_ground_floor_io_never_imports_torch(module):
    code = f"import sys, {module}; sys.exit(3 if 'torch' in sys.modules else 0)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"importing {module} imported torch" if done.returncode == 3 else done.stderr
