"""`livedream image` and `livedream layers`: outputs, stored parameters, and one-line errors."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SAMPLE, resized

from livedream import preset, to_image, to_tensor
from livedream.cli import main
from livedream.io.images import read_params

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--iters", "1", "--octaves", "1"]


def run(argv: list[object], capfd) -> tuple[int, str, str]:
    """The CLI in this process; capfd also catches what native code (OpenCV) writes to fd 2."""
    code = main([str(a) for a in argv])
    captured = capfd.readouterr()
    return code, captured.out, captured.err


def decode(path: Path) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, f"{path} does not decode"
    return bgr[:, :, ::-1]


def params_of(path: Path) -> dict[str, str]:
    text = read_params(path.read_bytes())
    assert text, f"no parameters stored in {path}"
    return dict(item.split("=", 1) for item in text.split("; "))


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


# -- dreaming ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_dreams_the_photo_into_a_file_with_its_parameters(ext, tmp_path, capfd, sample_rgb, dreamer_for):
    out = tmp_path / f"dream{ext}"
    code, stdout, stderr = run(["image", SAMPLE, "-o", out, *FAST], capfd)
    assert (code, stderr) == (0, "")
    assert stdout.strip() == str(out)
    assert files_under(tmp_path) == {out.name}  # no temporary .part file left
    got = decode(out).astype(np.float32)
    assert got.shape == sample_rgb.shape
    # the library's result for the same parameters
    d = dreamer_for()
    expected = to_image(d.dream(to_tensor(sample_rgb), preset("classic", iters=1, octaves=1)))[0]
    source = sample_rgb.astype(np.float32)
    assert float(np.abs(got - source).mean()) > 1.0
    if ext == ".png":
        assert np.array_equal(got, expected)  # lossless: exactly the library's pixels
    else:
        # JPEG smooths much of a one-step dream's fine detail away (mean error ~2.4, as large as
        # the dream itself), but what is left points the dream's way: cosine measured 0.50 at
        # quality 95, 0.26 at 80; re-encoding the input alone gives 0.002.
        change, dream = (got - source).ravel(), (expected - source).ravel()
        assert float(change @ dream) / float(np.linalg.norm(change) * np.linalg.norm(dream)) > 0.25
    params = params_of(out)
    assert params["iters"] == "1" and params["octaves"] == "1"
    assert params["model"] == "effnet-lite0" and params["seed"] == "0" and params["step"] == "1.5"
    assert params["input"] == "fruits.jpg"


def test_layers_with_weights_are_stored(tmp_path, capfd, sample_rgb):
    src = write_rgb(tmp_path / "small.png", resized(sample_rgb, 96))
    out = tmp_path / "out.png"
    layers = ["--layer", "block5:1", "--layer", "block9:0.5"]
    code, _, stderr = run(["image", src, "-o", out, *FAST, *layers], capfd)
    assert (code, stderr) == (0, "")
    params = params_of(out)
    assert params["layers"] == "('block5', 'block9')" and params["layer_weights"] == "(1.0, 0.5)"


def test_results_get_the_permissions_of_a_plainly_created_file(tmp_path, capfd, sample_rgb):
    src = write_rgb(tmp_path / "small.png", resized(sample_rgb, 64))
    out, plain = tmp_path / "out.png", tmp_path / "plain"
    plain.write_bytes(b"")  # what open() gives under this umask (not the temp file's 0600)
    code, _, stderr = run(["image", src, "-o", out, *FAST], capfd)
    assert (code, stderr) == (0, "")
    assert out.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_a_folder_and_several_inputs_go_to_an_output_folder(tmp_path, capfd, sample_rgb):
    src = tmp_path / "in"
    src.mkdir()
    small = resized(sample_rgb, 96)  # 96x90
    write_rgb(src / "a.jpg", small)
    write_rgb(src / "b.png", small[:, ::-1])
    write_rgb(src / "c.bmp", small[::-1])
    write_rgb(src / ".hidden.jpg", small)  # skipped, like the text file
    (src / "notes.txt").write_text("not an image\n")

    out = tmp_path / "out"
    code, stdout, stderr = run(["image", src, "-o", out, *FAST], capfd)
    assert code == 0
    assert all(line.startswith("dreaming") for line in stderr.splitlines() if line), stderr  # progress only
    assert "3 images" in stdout
    assert sorted(os.listdir(out)) == ["a.jpg", "b.png", "c.png"]  # .bmp is written as .png
    for name, source in (("a.jpg", "a.jpg"), ("b.png", "b.png"), ("c.png", "c.bmp")):
        assert decode(out / name).shape == (90, 96, 3)
        assert params_of(out / name)["input"] == source

    listed = tmp_path / "listed"
    code, _, stderr = run(["image", src / "b.png", src / "a.jpg", "-o", listed, *FAST], capfd)
    assert code == 0 and "error" not in stderr
    assert sorted(os.listdir(listed)) == ["a.jpg", "b.png"]
    assert not np.array_equal(decode(listed / "a.jpg"), decode(listed / "b.png"))


def test_a_folder_with_bad_images_dreams_the_good_ones_names_the_bad_ones_exits_1(tmp_path, capfd,
                                                                                  sample_rgb):
    src = tmp_path / "in"
    src.mkdir()
    small = resized(sample_rgb, 64)
    write_rgb(src / "a.jpg", small)
    ok, png = cv2.imencode(".png", small)
    (src / "b.png").write_bytes(png.tobytes()[: len(png) // 2])  # truncated: libpng complains
    (src / "c.jpg").write_bytes(b"")
    ok, jpg = cv2.imencode(".jpg", small)
    jpg = jpg.tobytes()  # damaged in the middle: it decodes, and libjpeg complains on stderr
    (src / "d.jpg").write_bytes(jpg[: len(jpg) // 2] + bytes(range(256)) * 4 + jpg[-2:])
    write_rgb(src / "e.png", small[::-1])
    out = tmp_path / "out"

    code, stdout, stderr = run(["image", src, "-o", out, *FAST], capfd)
    assert code == 1, stderr
    assert sorted(os.listdir(out)) == ["a.jpg", "d.jpg", "e.png"]  # every good one, after the bad
    assert params_of(out / "e.png")["input"] == "e.png"
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines()]  # (the bar's \r)
    lines = [line for line in lines if line and not line.startswith("dreaming")]
    assert lines[0].startswith(f"livedream: error: {src / 'b.png'} is not an image this tool can read (")
    assert "PNG input buffer is incomplete" in lines[0]  # libpng's reason, on our line
    assert lines[1:] == [
        f"livedream: error: {src / 'c.jpg'} is empty",
        f"livedream: error: 2 of 5 images failed: {src / 'b.png'}, {src / 'c.jpg'}",
    ], stderr  # and no line of libpng's or libjpeg's own
    assert "3 images in" in stdout


def test_a_folder_of_bad_images_only_leaves_no_output_folder(tmp_path, capfd):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jpg").write_text("text, not a JPEG\n")
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    code, _, stderr = run(["image", src, "-o", tmp_path / "out", *FAST], capfd)
    assert code == 1, stderr
    assert sorted(os.listdir(tmp_path)) == ["in"]  # the folder it made held nothing: removed
    (tmp_path / "mine").mkdir()
    code, _, stderr = run(["image", src, "-o", tmp_path / "mine", *FAST], capfd)
    assert code == 1 and (tmp_path / "mine").is_dir()  # a folder that was there stays


def _riff_webp(chunk: bytes, body: bytes) -> bytes:
    payload = b"WEBP" + chunk + len(body).to_bytes(4, "little") + body
    return b"RIFF" + len(payload).to_bytes(4, "little") + payload


def _tiff(order: str, kind: int, width: int, height: int) -> bytes:
    """A TIFF header and its first IFD: ImageWidth, ImageLength (SHORT 3 or LONG 4), no pixels."""
    e = "<" if order == "II" else ">"
    fmt = "H2x" if kind == 3 else "I"  # a SHORT sits in the first 2 bytes of the value field
    head = order.encode() + struct.pack(e + "HI", 42, 8)
    entries = [struct.pack(e + "HHI" + fmt, tag, kind, 1, value)
               for tag, value in ((256, width), (257, height))]
    return head + struct.pack(e + "H", len(entries)) + b"".join(entries) + struct.pack(e + "I", 0)


BOMBS = {  # name: (bytes, declared size)
    "lossless.webp": (_riff_webp(b"VP8L", b"\x2f" + (16382 | 16382 << 14).to_bytes(4, "little")),
                      (16383, 16383)),
    "lossy.webp": (_riff_webp(b"VP8 ", b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", 16383, 16383)),
                   (16383, 16383)),
    "extended.webp": (_riff_webp(b"VP8X", b"\x10\0\0\0" + (16382).to_bytes(3, "little") * 2),
                      (16383, 16383)),
    "little-short.tif": (_tiff("II", 3, 16383, 16383), (16383, 16383)),
    "big-short.tiff": (_tiff("MM", 3, 16383, 16383), (16383, 16383)),
    "little-long.tif": (_tiff("II", 4, 100_000, 2000), (100_000, 2000)),
    "big-long.tif": (_tiff("MM", 4, 70_000, 70_000), (70_000, 70_000)),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_an_image_bomb_is_refused_from_its_header_before_decoding(name, tmp_path, capfd, monkeypatch):
    data, (width, height) = BOMBS[name]
    path = tmp_path / name
    path.write_bytes(data + bytes(10_000))  # ~10 KB, like the real ones

    def no_decoding(*args: object) -> None:
        raise AssertionError("the decoder ran")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    start = time.monotonic()
    code, _, stderr = run(["image", path, "-o", tmp_path / "o.png", *FAST], capfd)
    assert time.monotonic() - start < 1.0
    assert code == 2
    assert stderr == (f"livedream: error: {path} has {width}x{height} = {width * height:,} pixels, "
                      "more than the limit of 100,000,000\n")
    assert sorted(os.listdir(tmp_path)) == [name]


# -- errors --------------------------------------------------------------------------------------
Case = Callable[[Path], tuple[list[object], list[str]]]


def o(t: Path) -> Path:
    """The output file of most error cases, in the (empty) folder `out`."""
    return t / "out" / "o.jpg"


def _text_as_jpg(t: Path):
    (t / "notes.jpg").write_text("this is text, not a JPEG\n")
    return ["image", t / "notes.jpg", "-o", o(t)], ["notes.jpg is not an image"]


def _empty(t: Path):
    (t / "empty.jpg").write_bytes(b"")
    return ["image", t / "empty.jpg", "-o", o(t)], ["empty.jpg is empty"]


def _empty_folder(t: Path):
    (t / "nothing").mkdir()
    return ["image", t / "nothing", "-o", t / "out"], ["no image files in folder"]


def _parent_is_a_file(t: Path):
    (t / "afile").write_text("x\n")
    return ["image", SAMPLE, "-o", t / "afile" / "o.jpg"], ["output folder does not exist", "afile"]


def _read_only(t: Path):
    (t / "out").chmod(0o500)
    return ["image", SAMPLE, "-o", o(t)], ["not writable"]


def _truncated_png(t: Path):
    ok, png = cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8) + 90)
    (t / "cut.png").write_bytes(png.tobytes()[:60])  # libpng prints its own "libpng error:" line
    return ["image", t / "cut.png", "-o", o(t)], ["cut.png is not an image", "PNG input buffer is incomplete"]


def _same_names(t: Path):
    for sub in ("x", "y"):
        (t / sub).mkdir()
        (t / sub / "a.jpg").symlink_to(SAMPLE)
    return ["image", t / "x" / "a.jpg", t / "y" / "a.jpg", "-o", t / "out"], ["two inputs", "a.jpg"]


ERRORS: dict[str, Case] = {
    "missing input": lambda t: (["image", t / "nope.jpg", "-o", o(t)], ["file not found"]),
    "text named .jpg": _text_as_jpg,
    "empty file": _empty,
    "folder without images": _empty_folder,
    "unknown layer": lambda t: (
        ["image", SAMPLE, "-o", o(t), "--layer", "nope"],
        ["unknown layer 'nope'", "block9", "stem"],
    ),
    "channel out of range": lambda t: (
        ["image", SAMPLE, "-o", o(t), "--channel", "112"],
        ["channel 112 out of range", "112 channels"],
    ),
    "missing output folder": lambda t: (
        ["image", SAMPLE, "-o", t / "missing" / "o.jpg"], ["output folder does not exist", "missing"],
    ),
    "output parent is a file": _parent_is_a_file,
    "read-only output folder": _read_only,
    "missing weights file": lambda t: (
        ["image", SAMPLE, "-o", o(t), "--weights", "/nope.pth"],
        ["weights file not found: /nope.pth"],
    ),
    "googlenet without weights": lambda t: (
        ["image", SAMPLE, "-o", o(t), "--model", "googlenet"], ["--weights", "effnet-lite0"],
    ),
    "unknown model": lambda t: (
        ["image", SAMPLE, "-o", o(t), "--model", "nope"], ["unknown model 'nope'", "googlenet"],
    ),
    "unknown preset": lambda t: (
        ["image", SAMPLE, "-o", o(t), "--preset", "nope"], ["unknown preset 'nope'", "classic"],
    ),
    "invalid value": lambda t: (["image", SAMPLE, "-o", o(t), "--iters", "-1"], ["iters must be >= 0"]),
    "fp16 on the cpu": lambda t: (
        ["image", SAMPLE, "-o", o(t), "--precision", "fp16"], ["fp16 needs a CUDA device"],
    ),
    "unknown device": lambda t: (["image", SAMPLE, "-o", o(t), "--device", "tpu"], ["tpu"]),
    "bad layer weight": lambda t: (
        ["image", SAMPLE, "-o", o(t), "--layer", "block9:x"], ["layer weight must be a number"],
    ),
    "missing guide": lambda t: (
        ["image", SAMPLE, "-o", o(t), "--guide", t / "guide.jpg"], ["file not found", "guide.jpg"],
    ),
    "output format": lambda t: (
        ["image", SAMPLE, "-o", t / "out" / "o.bmp", "--iters", "0"], ["cannot write '.bmp'"],
    ),
    "two inputs, one output name": _same_names,
    "truncated png": _truncated_png,
}


def setup_case(name: str, root: Path) -> tuple[list[str], list[str], set[str]]:
    """Inputs for case `name` under `root` (with an empty `out` folder); argv, fragments, files."""
    (root / "out").mkdir()
    argv, fragments = ERRORS[name](root)
    return [str(a) for a in argv], fragments, files_under(root)


def check_error(code: int, stderr: str, fragments: list[str], root: Path, before: set[str]) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("livedream: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert files_under(root) == before  # no output, no .part file, nowhere
    assert not (root / "missing").exists()


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_are_one_line_exit_2_and_leave_no_file(name, tmp_path, capfd, monkeypatch):
    if name == "read-only output folder" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; 'output parent is a file' covers the rest")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no cached googlenet weights
    argv, fragments, before = setup_case(name, tmp_path)
    code, _, stderr = run(argv, capfd)
    check_error(code, stderr, fragments, tmp_path, before)


# The same errors from a real process: a few representative ones. Each process spends ~3 s of CPU
# importing torch, so those that will run start together, as soon as this module's tests begin,
# and do their work while the in-process tests run.
SUBPROCESS_CASES = ["missing input", "text named .jpg", "unknown layer", "googlenet without weights"]


@pytest.fixture(scope="module", autouse=True)
def processes(request, tmp_path_factory):
    wanted = [
        item.callspec.params["name"] for item in request.session.items
        if getattr(item, "originalname", None) == "test_errors_from_a_real_process"
    ]
    started = {}
    for name in wanted:
        root = tmp_path_factory.mktemp("proc")
        argv, fragments, before = setup_case(name, root)
        env = dict(os.environ, TORCH_HOME=str(root / "torch-home"), OMP_NUM_THREADS="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "livedream", *argv], cwd=root, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        started[name] = (proc, fragments, root, before)
    yield started
    for proc, *_ in started.values():
        if proc.poll() is None:  # its test did not run to the end
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_errors_from_a_real_process(name, processes):
    proc, fragments, root, before = processes[name]
    _, stderr = proc.communicate(timeout=300)
    check_error(proc.returncode, stderr, fragments, root, before)


@pytest.mark.parametrize("ext", [".gif", ".bmp", ".webp", ".tif", ".tiff", ".heic", ".avif", ".GIF"])
def test_an_output_in_a_format_we_cannot_write_is_refused_and_nothing_is_made(ext, tmp_path, capfd):
    out = tmp_path / f"x{ext}"
    code, _, stderr = run(["image", SAMPLE, "-o", out, "--iters", "0"], capfd)
    assert code == 2, stderr
    assert stderr == f"livedream: error: cannot write '{ext.lower()}' files ({out}); use a name " \
                     "ending in .png, .jpg, .jpeg\n"
    assert os.listdir(tmp_path) == []  # no file, no folder x.gif/


def test_usage_errors_are_one_line_and_exit_2(capfd):
    with pytest.raises(SystemExit) as exit_:
        main(["image", str(SAMPLE), "-o", "x.jpg", "--iters", "abc"])
    assert exit_.value.code == 2
    err = capfd.readouterr().err
    assert len(err.splitlines()) == 1 and "error: argument --iters: invalid int value: 'abc'" in err
    assert "usage" not in err


def test_help_and_usage_errors_do_not_wait_for_torch():
    # Every subcommand's parser is built without importing torch (a ~2 s import).
    code = ("import sys; from livedream.cli import build_parser; build_parser().parse_args(['layers']); "
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False", r.stderr


def test_usage_errors_start_like_every_other_error(capfd):
    with pytest.raises(SystemExit):
        main(["image", str(SAMPLE), "-o", "x.jpg", "--iters", "abc"])
    assert capfd.readouterr().err.startswith("livedream: error: ")


# -- layers --------------------------------------------------------------------------------------
def _row(out: str, name: str) -> list[str]:
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == [name]]
    assert len(rows) == 1, out
    return rows[0]


def test_layers_lists_block9_with_112_channels(capfd):
    code, out, err = run(["layers"], capfd)
    assert (code, err) == (0, "")
    assert _row(out, "block9") == ["block9", "112", "16", "_blocks.9"]
    assert "default block9" in out
    assert "every convolution" not in out


def test_layers_of_googlenet_need_no_weights(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch hub: no weights anywhere
    code, out, err = run(["layers", "--model", "googlenet", "--all"], capfd)
    assert (code, err) == (0, "")
    assert _row(out, "inception4c") == ["inception4c", "512", "16", "inception4c"]
    assert _row(out, "inception4d.branch2.0.conv") == ["inception4d.branch2.0.conv", "144"]


def test_layers_of_an_unknown_model(capfd):
    code, out, err = run(["layers", "--model", "nope"], capfd)
    assert code == 2 and out == ""
    assert err.splitlines() == ["livedream: error: unknown model 'nope'; available: effnet-lite0, googlenet"]
