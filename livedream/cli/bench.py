"""`livedream bench`: the benchmark suite (livedream.bench), tables and plots. Benchmarks never
fail on speed: the exit code is 0 whatever the numbers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from livedream.bench import SECTIONS

__all__ = ["register", "run"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="benchmark suite: published figures, presets, scaling")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: proves every path works")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    p.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown here")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots here (needs matplotlib)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of: {', '.join(SECTIONS)} (default: all)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from livedream.bench import run_suite
    from livedream.bench.common import FULL, QUICK, log
    from livedream.bench.report import headline, to_markdown, write_plots
    from livedream.config import ConfigError
    from livedream.io.images import atomic_write, check_writable

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(sorted(unknown))}; "
                          f"available: {', '.join(SECTIONS)}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"threads must be >= 1, got {args.threads}")
    for path in (args.json, args.markdown):
        if path:
            check_writable(path)

    def save(data: dict) -> None:  # after every section, so a long run that stops keeps its rows
        if args.json:
            atomic_write(args.json, (json.dumps(data, indent=1) + "\n").encode())

    command = "livedream bench" + (" --quick" if args.quick else "") + (
        f" --threads {args.threads}" if args.threads else "") + (
        f" --sections {','.join(sections)}" if tuple(sections) != SECTIONS else "")
    data = run_suite(QUICK if args.quick else FULL, sections, threads=args.threads, command=command,
                     on_section=save)
    save(data)
    if args.markdown:
        atomic_write(args.markdown, to_markdown(data).encode())
    if args.plots:
        plots = write_plots(data, args.plots)
        log(f"plots: {', '.join(plots)}" if isinstance(plots, list) else f"plots skipped: {plots}")
    log("\n".join(["== headline", *headline(data)]))
    return 0
