"""`livedream` command line: builds a config from arguments and calls the library.

Every error a user can cause ends as one line on stderr and exit code 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence

from livedream.config import DreamConfig, VideoConfig, load_presets, preset, video_preset
from livedream.errors import InputError, LivedreamError, OutputError

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line too."""

    def error(self, message: str) -> None:  # type: ignore[override]
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
    """The options of commands that dream streams of frames (video, live); see VideoConfig."""
    g = p.add_argument_group("video")
    g.add_argument("--dream-width", type=int, help="dream at this width, output at full size")
    g.add_argument("--batch", type=int, help="frames dreamed together per device")
    g.add_argument("--devices", help="comma-separated devices, one model each (cuda:0,cuda:1); default auto: "
                   "every GPU, else one CPU replica per core")
    g.add_argument("--decay", type=float, help="warm-start residual decay per frame (0..1)")
    g.add_argument("--cold-iters", type=int, help="iterations at the first frame and scene cuts")
    g.add_argument("--strength", type=float, help="scale of the dream added to the frame")
    g.add_argument("--no-warm", action="store_true", help="dream every frame from scratch")


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
    return preset(args.preset, base, device=args.device, **_dream_overrides(args))


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
    from dataclasses import asdict

    return {k: str(v) for k, v in asdict(cfg).items() if v not in (None, ())}


# -- image ----------------------------------------------------------------------------------------
def cmd_image(args: argparse.Namespace) -> int:
    from livedream.io.images import (
        IMAGE_EXTENSIONS,
        check_image_extension,
        check_image_file,
        check_writable,
        read_image,
        write_image,
    )

    cfg = config_from_args(args)
    inputs = _expand_inputs(args.inputs, IMAGE_EXTENSIONS, "image")
    for src in inputs:  # a cheap look at each file's signature, before any work is done
        check_image_file(src)
    pairs = _output_paths(inputs, args.output, IMAGE_EXTENSIONS, keep_ext=(".png", ".jpg", ".jpeg"),
                          default_ext=".png")
    for _, out in pairs:
        check_writable(out)
        check_image_extension(out)
    guide = read_image(args.guide) if args.guide else None

    from livedream.dream import Dreamer, to_image, to_tensor
    from livedream.progress import Progress

    dreamer = Dreamer(cfg)
    if guide is not None:
        dreamer.set_guide(to_tensor(guide))
    params = config_params(cfg) | ({"guide": os.path.basename(args.guide)} if args.guide else {})
    bar = Progress(len(pairs), "dreaming", "images", enabled=len(pairs) > 1)
    for src, out in pairs:
        rgb = read_image(src)
        result = to_image(dreamer.dream(to_tensor(rgb)))[0]
        write_image(out, result, params | {"input": os.path.basename(src)})
        bar.update()
    bar.close()
    print(pairs[0][1] if len(pairs) == 1 else f"{len(pairs)} images in {args.output}")
    return 0


def _expand_inputs(paths: Sequence[str], exts: Sequence[str], kind: str) -> list[str]:
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


def _output_paths(inputs: list[str], output: str, exts: Sequence[str], *, keep_ext: Sequence[str],
                  default_ext: str) -> list[tuple[str, str]]:
    """One input and an output with a known extension -> that file; else an output folder.
    An output that is one of the inputs is refused (the rename at the end would replace it)."""
    if len(inputs) == 1 and output.lower().endswith(tuple(exts)) and not os.path.isdir(output):
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


def _not_inputs(inputs: list[str], pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    sources = {os.path.realpath(src) for src in inputs}
    for _, out in pairs:
        if os.path.realpath(out) in sources:
            raise OutputError(f"{out} is also an input: it would be overwritten; choose another output")
    return pairs


# -- video ----------------------------------------------------------------------------------------
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv",
                    ".wmv")


def video_config_from_args(args: argparse.Namespace) -> VideoConfig:
    extra = load_presets(args.presets_file) if args.presets_file else None
    devices = args.devices or args.device
    return video_preset(
        args.preset, extra, **_dream_overrides(args), dream_width=args.dream_width,
        warm=False if args.no_warm else None, decay=args.decay, cold_iters=args.cold_iters,
        batch=args.batch, strength=args.strength,
        devices=tuple(d.strip() for d in devices.split(",")) if devices else None,
    )


def cmd_video(args: argparse.Namespace) -> int:
    import json

    from livedream.io.images import check_writable
    from livedream.pipeline import build_dreamers
    from livedream.video_job import dream_video

    inputs = _expand_inputs(args.inputs, VIDEO_EXTENSIONS, "video")
    pairs = _output_paths(inputs, args.output, VIDEO_EXTENSIONS, keep_ext=(".mp4", ".mkv", ".mov"),
                          default_ext=".mp4")
    for _, out in pairs:
        check_writable(out)
    if args.report:
        check_writable(args.report)
    cfg = video_config_from_args(args)
    dreamers = build_dreamers(cfg)
    params = config_params(cfg.dream) | {k: str(v) for k, v in vars(cfg).items() if k != "dream"}
    entries, code = [], 0
    for src, out in pairs:
        result = dream_video(src, out, cfg, dreamers, start=args.start, duration=args.duration,
                             metadata={"livedream": "; ".join(f"{k}={v}" for k, v in params.items())},
                             progress=not args.quiet)
        entries.append({"input": src, "output": out, **result.report.as_dict(),
                        "stopped_early": result.stopped_early, "parameters": params})
        if result.failed is not None:
            print(f"livedream: error: {result.failed}; wrote the {result.frames} frames dreamed "
                  f"before it to {out}", file=sys.stderr)
            code = 1
            break
        if result.interrupted:
            print(f"livedream: interrupted: wrote the {result.frames} frames dreamed so far to {out}",
                  file=sys.stderr)
            code = EXIT_INTERRUPTED
            break
        if result.stopped_early:
            print(f"livedream: warning: {src}: {result.stopped_early}; dreamed the {result.frames} "
                  f"frames before it into {out}", file=sys.stderr)
        print(f"{out}: {result.frames} frames, {result.report.fps:.1f} fps")
    if args.report:
        from livedream.io.images import atomic_write

        body = entries[0] if len(entries) == 1 else {"files": entries}
        atomic_write(args.report, json.dumps(body, indent=2).encode())
    return code


# -- layers ---------------------------------------------------------------------------------------
def cmd_layers(args: argparse.Namespace) -> int:
    from torch import nn

    from livedream.models import model_spec

    spec = model_spec(args.model)
    net = spec.arch()
    print(f"{'name':<14} {'channels':>8} {'stride':>6}  path   ({args.model}, default {spec.default_layer})")
    for info in net.layers():
        print(f"{info.name:<14} {info.channels:>8} {info.stride:>6}  {info.path}")
    if args.all:
        print("\nevery convolution, by dotted path (outputs are pre-activation once BatchNorm is folded):")
        for path, module in net.named_modules():
            if isinstance(module, nn.Conv2d) and net.stage_of(path) is not None:
                print(f"{path:<40} {module.out_channels:>5}")
    return 0


# -- entry point ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="livedream", description="DeepDream for images, video files and live video.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("image", help="dream still images")
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders")
    p.add_argument("-o", "--output", required=True, help="output file, or folder for several")
    p.add_argument("--guide", help="image whose features steer the dream")
    add_dream_options(p, default_preset="classic")
    p.set_defaults(run=cmd_image)

    p = sub.add_parser("video", help="dream video files, sound kept")
    p.add_argument("inputs", nargs="+", metavar="IN", help="video files or folders")
    p.add_argument("-o", "--output", required=True, help="output file, or folder for several")
    p.add_argument("--start", type=float, help="start at this many seconds")
    p.add_argument("--duration", type=float, help="dream only this many seconds")
    p.add_argument("--report", help="write a JSON report (fps, stage times, queues) here")
    p.add_argument("--presets-file", help="TOML file with more presets")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dream_options(p, default_preset="realtime")
    add_video_options(p)
    p.set_defaults(run=cmd_video)

    p = sub.add_parser("layers", help="list a network's layers")
    p.add_argument("--model", default="effnet-lite0")
    p.add_argument("--all", action="store_true", help="also list every convolution's path")
    p.set_defaults(run=cmd_layers)

    from livedream import live_cli
    from livedream.bench import register as register_bench
    from livedream.farm.cli import register as register_batch
    from livedream.server.cli import register as register_serve

    live_cli.register(sub)
    register_serve(sub)
    register_batch(sub)
    register_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.run(args))
        # Skip collecting torch's object graph at exit (up to ~1 s on a busy CPU; a Ctrl-C
        # must end a live run within 2 s).
        gc.freeze()
        return code
    except LivedreamError as e:
        print(f"livedream: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("livedream: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `livedream layers | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())

