"""What the subcommands share: exit codes, the parser class, the dream and video options, and
turning arguments into configs and input / output paths. Every error a user can cause ends as
one line on stderr and exit code 2 (see `livedream.cli.main`)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from types import FrameType

from livedream.config import DreamConfig, VideoConfig, load_presets, preset, video_preset
from livedream.errors import InputError, OutputError

__all__ = [
    "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED", "Parser", "add_dream_options",
    "add_video_options", "config_from_args", "canonical_layers", "video_config_from_args", "config_params",
    "video_params", "expand_inputs", "output_paths", "setup_logging", "VIDEO_EXTENSIONS",
    "IMAGE_FILE_EXTENSIONS", "VIDEO_FILE_EXTENSIONS", "no_empty_output_folder", "sigterm_as_interrupt",
]

EXIT_OK = 0
EXIT_FAILED = 1  # some of the work failed mid-run (each failure is named)
EXIT_USAGE = 2  # bad input, or an output that cannot start: one line on stderr
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv",
                    ".wmv")

# Extensions that name a file of the kind, whether we read or write that format or not: for one
# input, an output named so is a file to write, or refused when we cannot write it; never a
# folder to create (`-o x.gif` once made a folder x.gif/). See `output_paths`.
IMAGE_FILE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".heic",
                         ".heif", ".avif", ".jxl", ".jp2", ".j2k", ".ppm", ".pgm", ".pbm", ".pnm",
                         ".exr", ".hdr", ".ico", ".svg", ".psd", ".dng", ".raw", ".apng")
VIDEO_FILE_EXTENSIONS = VIDEO_EXTENSIONS + (".gif", ".apng", ".3gp", ".ogv", ".mts", ".m2ts",
                                            ".vob", ".y4m", ".mxf", ".asf", ".f4v")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line too."""

    def error(self, message: str) -> None:  # type: ignore[override]  # argparse's says NoReturn
        command = self.prog.split()[-1] if " " in self.prog else ""
        where = f" ({command})" if command else ""
        self.exit(EXIT_USAGE, f"livedream: error: {message}{where}\n")


def add_dream_options(p: argparse.ArgumentParser, default_preset: str) -> None:
    """The options every dreaming command shares; None means "from the preset"."""
    g = p.add_argument_group("dream")
    g.add_argument("--preset", default=default_preset, help=f"parameter set (default {default_preset})")
    g.add_argument("--model", help="network: effnet-lite0 (default) or googlenet")
    g.add_argument("--weights", help="state-dict file for the network")
    g.add_argument("--layer", action="append",
                   help="layer to dream (friendly name or dotted path); repeat for several, "
                        "NAME:WEIGHT to weight them")
    g.add_argument("--channel", type=int, help="dream one channel of the layer (the 'filter')")
    g.add_argument("--iters", type=int, help="gradient steps per octave")
    g.add_argument("--octaves", type=int, help="octave pyramid levels")
    g.add_argument("--octave-scale", type=float, help="size ratio between octaves")
    g.add_argument("--step", type=float, help="step size (pixel units)")
    g.add_argument("--jitter", type=int, help="random shift in pixels per step")
    g.add_argument("--tile", type=int, help="tile size for gradients of big frames (0: off)")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    g.add_argument("--device", help="cpu, cuda or cuda:N")
    g.add_argument("--seed", type=int, help="random seed (same seed, same pixels)")


def add_video_options(p: argparse.ArgumentParser) -> None:
    """The options of commands that dream streams of frames (video, live, batch); see VideoConfig."""
    g = p.add_argument_group("video")
    g.add_argument("--dream-width", type=int, help="dream at this width, output at full size")
    g.add_argument("--batch", type=int, help="frames dreamed together per device")
    g.add_argument("--devices", help="comma-separated devices, one model each (cuda:0,cuda:1); default auto: "
                   "every GPU, else one CPU replica per core")
    g.add_argument("--decay", type=float, help="warm-start residual decay per frame (0..1)")
    g.add_argument("--cold-iters", type=int, help="iterations at the first frame and scene cuts")
    g.add_argument("--strength", type=float, help="scale of the dream added to the frame")
    g.add_argument("--no-warm", action="store_true", help="dream every frame from scratch")
    g.add_argument("--student", metavar="WEIGHTS",
                   help="dream with a student (a one-pass network from `livedream distill`): a weights "
                        "file, auto (the shipped one for the layer, if any; realtime's default) or none "
                        "(gradient ascent)")
    g.add_argument("--blend", type=float,
                   help="student: share of the previous dream kept where the optical flow holds (0..1)")
    g.add_argument("--no-adaptive", action="store_true",
                   help="keep the preset's settings (default for realtime: adapt them to keep the pace)")
    g.add_argument("--fps-target", type=float,
                   help="files: adapt the settings to dream this many frames per second (the output then "
                        "depends on the machine's speed; without it a run is reproducible)")
    g.add_argument("--presets-file", help="TOML file with more presets")


def _dream_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The DreamConfig fields given by `add_dream_options` (None where not given; no device)."""
    layers, weights = _parse_layers(args.layer)
    return dict(
        model=args.model, weights=args.weights, layers=layers, layer_weights=weights,
        channel=args.channel, iters=args.iters, octaves=args.octaves,
        octave_scale=args.octave_scale, step=args.step, jitter=args.jitter, tile=args.tile,
        precision=args.precision, seed=args.seed,
    )


def config_from_args(args: argparse.Namespace, base: DreamConfig | None = None) -> DreamConfig:
    return canonical_layers(preset(args.preset, base, device=args.device, **_dream_overrides(args)))


def video_config_from_args(args: argparse.Namespace) -> VideoConfig:
    extra = load_presets(args.presets_file) if args.presets_file else None
    devices = args.devices or args.device
    cfg = video_preset(
        args.preset, extra, **_dream_overrides(args), dream_width=args.dream_width,
        warm=False if args.no_warm else None, decay=args.decay, cold_iters=args.cold_iters,
        batch=args.batch, strength=args.strength, blend=args.blend,
        adaptive=False if args.no_adaptive else (True if args.fps_target else None),
        fps_target=args.fps_target,
        devices=tuple(d.strip() for d in devices.split(",")) if devices else None,
    )
    if args.student is not None:
        cfg = cfg.replace(student=None if args.student.lower() == "none" else args.student)
    cfg = cfg.replace(dream=canonical_layers(cfg.dream))
    if cfg.student not in (None, "auto") and not args.layer:  # the student's own dream
        cfg = _student_dream(cfg)
    return cfg


def _student_dream(cfg: VideoConfig) -> VideoConfig:
    """`cfg` dreaming the layer and channel its student learned (when none was asked for)."""
    from livedream.student.weights import load_student

    student = load_student(cfg.student)  # type: ignore[arg-type]
    return cfg.replace(dream=cfg.dream.replace(model=student.model, layers=student.layers,
                                               channel=student.channel if cfg.dream.channel is None
                                               else cfg.dream.channel))


def canonical_layers(cfg: DreamConfig) -> DreamConfig:
    """`cfg` with its layers in their canonical form (see LayerTable): friendly names where they
    exist; ModelError (one line, exit 2) for a layer the network does not have."""
    if not cfg.layers:
        return cfg
    from livedream.models.layer_table import layer_table  # torch: only once a command runs

    table = layer_table(cfg.model)
    return cfg.replace(layers=tuple(table.canonical(layer) for layer in cfg.layers))


def _parse_layers(specs: list[str] | None) -> tuple[tuple[str, ...] | None, tuple[float, ...] | None]:
    if not specs:
        return None, None
    names, weights = [], []
    for spec in specs:
        name, _, weight = spec.partition(":")
        names.append(name)
        try:
            weights.append(float(weight) if weight else 1.0)
        except ValueError:
            raise InputError(f"layer weight must be a number: {spec!r}") from None
    return tuple(names), tuple(weights)


def config_params(cfg: DreamConfig) -> dict[str, str]:
    """The parameters that define a result, as text, to store beside it."""
    return {k: str(v) for k, v in asdict(cfg).items() if v not in (None, ())}


def video_params(cfg: VideoConfig) -> dict[str, str]:
    """`config_params` of a video config: the dream's and the video's own fields."""
    return config_params(cfg.dream) | {k: str(v) for k, v in vars(cfg).items() if k != "dream"}


def expand_inputs(paths: Sequence[str], exts: Sequence[str], kind: str) -> list[str]:
    """Files as given; folders -> their files with `exts`, sorted. Missing paths are errors."""
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            inside = sorted(os.path.join(path, n) for n in os.listdir(path)
                            if n.lower().endswith(tuple(exts)) and not n.startswith("."))
            if not inside:
                raise InputError(f"no {kind} files in folder {path}")
            found += inside
        elif not os.path.exists(path):
            raise InputError(f"file not found: {path}")
        else:
            found.append(path)
    return found


def output_paths(inputs: list[str], output: str, exts: Sequence[str], *, keep_ext: Sequence[str],
                 default_ext: str) -> list[tuple[str, str]]:
    """One input and an output with an extension from `exts` (IMAGE_FILE_EXTENSIONS...) -> that
    file, refused (OutputError) unless we write that format (`keep_ext`); else an output folder.
    An output that is one of the inputs is refused (the rename at the end would replace it)."""
    ext = os.path.splitext(output)[1].lower()
    if len(inputs) == 1 and ext in exts and not os.path.isdir(output):
        if ext not in keep_ext:
            raise OutputError(f"cannot write {ext!r} files ({output}); use a name ending in "
                              f"{', '.join(keep_ext)}")
        return _not_inputs(inputs, [(inputs[0], output)])
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(output):
        if not os.path.isdir(parent):
            raise OutputError(f"output folder does not exist: {parent}")
        try:
            os.makedirs(output)
        except OSError as e:
            raise OutputError(f"cannot create output folder {output}: {e.strerror}") from e
    pairs, seen = [], set()
    for src in inputs:
        stem, ext = os.path.splitext(os.path.basename(src))
        out = os.path.join(output, stem + (ext if ext.lower() in keep_ext else default_ext))
        if out in seen:
            raise OutputError(f"two inputs would both be written to {out}")
        seen.add(out)
        pairs.append((src, out))
    return _not_inputs(inputs, pairs)


@contextlib.contextmanager
def no_empty_output_folder(output: str) -> Iterator[None]:
    """Around a run that may create `output` as a folder (`output_paths`): if nothing was there
    before and the run leaves the folder empty (every input failed), it is removed. A file, a
    folder with something in it, or one that was there before is left alone."""
    made = not os.path.exists(output)
    try:
        yield
    finally:
        if made:
            with contextlib.suppress(OSError):
                os.rmdir(output)


def _not_inputs(inputs: list[str], pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    sources = {os.path.realpath(src) for src in inputs}
    for _, out in pairs:
        if os.path.realpath(out) in sources:
            raise OutputError(f"{out} is also an input: it would be overwritten; choose another output")
    return pairs


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """In the block, SIGTERM (`kill`, a service manager, a container stopping) stops the command
    as Ctrl-C does: a KeyboardInterrupt, so the work so far is finalized and it exits 130. Only
    the first one raises; more while that finishes are ignored (SIGKILL still ends it at once).
    Python handles signals in the main thread only: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def setup_logging(quiet: bool) -> None:
    """Notices on stderr as `livedream: ...` lines (unless the caller set up logging already)."""
    logger = logging.getLogger("livedream")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("livedream: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
