"""`livedream batch`: dream many video files, or one long film in chunks, on this machine's cores
(`--executor local`) or a Ray cluster (`--executor ray`), resumable from the manifest.

Exit codes: 0 every file done, 1 some file failed (each is named), 2 bad input or an executor
that cannot start (one line), 130 Ctrl-C or SIGTERM (re-run the same command to resume).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from livedream.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    VIDEO_EXTENSIONS,
    VIDEO_FILE_EXTENSIONS,
    add_dream_options,
    add_video_options,
    expand_inputs,
    output_paths,
    sigterm_as_interrupt,
    video_config_from_args,
    video_params,
)
from livedream.errors import InputError

__all__ = ["register", "run"]

EPILOG = """\
Outputs are named after their inputs (clip.avi -> OUTDIR/clip.mp4), as `livedream video` names
them. Files longer than 1.5x --chunk-seconds are cut at keyframes into chunks dreamed in
parallel, each started --warmup frames early and cross-faded into the next, then joined without
re-encoding with the source's sound. OUTDIR/livedream-batch.json records every finished chunk:
after a crash or Ctrl-C, the same command skips them.
With --executor ray, inputs and OUTDIR must be at the same path on every node (shared storage).
examples:
  livedream batch footage/ -o dreams/
  livedream batch film.mov -o dreams/ --chunk-seconds 30 --preset quality
  livedream batch footage/ -o dreams/ --executor ray --address auto
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `batch` to `subparsers` (from `parser.add_subparsers()`); the new parser."""
    p = subparsers.add_parser(
        "batch", help="dream many video files or long films, in parallel, resumable",
        description="Dream video files in parallel on this machine or a Ray cluster: long files "
                    "in keyframe-aligned chunks, sound kept, resumable.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IN", help="video files or folders")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="output folder (or file name, for one input)")
    g = p.add_argument_group("farm")
    g.add_argument("--executor", "--engine", dest="executor", choices=["local", "ray"], default="local",
                   help="local: worker processes here (default); ray: a Ray cluster")
    g.add_argument("--address", help="Ray cluster address (auto, ray://host:10001); "
                                     "default: start a local one")
    g.add_argument("--workers", type=int,
                   help="local: worker processes (default one per core); ray: CPUs of the local "
                        "cluster it starts, or at most this many tasks at once on --address")
    g.add_argument("--chunk-seconds", type=float, default=30.0,
                   help="cut files longer than 1.5x this at keyframes (default 30; 0: never)")
    g.add_argument("--warmup", type=int, default=16,
                   help="frames dreamed before each chunk and dropped, and cross-faded into it at "
                        "the end of the chunk before (default 16; 0: chunks start cold)")
    g.add_argument("--retries", type=int, default=2, help="tries again per failing chunk (default 2)")
    g.add_argument("--crf", type=int, default=18, help="x264 quality, lower is better (default 18)")
    g.add_argument("--quiet", action="store_true", help="no progress line")
    add_dream_options(p, default_preset="realtime")
    add_video_options(p)
    p.set_defaults(run=run)
    return p


def _check_numbers(args: argparse.Namespace) -> None:
    checks = [
        (args.chunk_seconds >= 0, f"--chunk-seconds must be >= 0, got {args.chunk_seconds:g}"),
        (args.workers is None or args.workers >= 1, f"--workers must be >= 1, got {args.workers}"),
        (args.warmup >= 0, f"--warmup must be >= 0 frames, got {args.warmup}"),
        (args.retries >= 0, f"--retries must be >= 0, got {args.retries}"),
        (0 <= args.crf <= 51, f"--crf must be in 0..51, got {args.crf}"),
        (args.executor == "ray" or args.address is None, "--address needs --executor ray"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def run(args: argparse.Namespace) -> int:
    from livedream.farm.job import BatchOptions, run_batch
    from livedream.io.images import check_writable

    _check_numbers(args)
    if args.executor == "ray":
        from livedream.farm.ray_executor import import_ray

        import_ray()  # before any work: ExecutorUnavailable says how to install it
    inputs = expand_inputs(args.inputs, VIDEO_EXTENSIONS, "video")
    pairs = output_paths(inputs, args.output, VIDEO_FILE_EXTENSIONS, keep_ext=(".mp4", ".mkv", ".mov"),
                         default_ext=".mp4")
    for _, out in pairs:
        check_writable(out)
    cfg = video_config_from_args(args)
    params = video_params(cfg)
    options = BatchOptions(
        chunk_seconds=args.chunk_seconds or None, warmup=args.warmup, retries=args.retries,
        crf=args.crf, metadata={"livedream": "; ".join(f"{k}={v}" for k, v in params.items())},
        progress=not args.quiet)
    with sigterm_as_interrupt(), _executor(args) as executor:  # SIGTERM: as Ctrl-C, exit 130
        summary = run_batch(pairs, cfg, executor, options)
    for f in summary.files:
        for warning in f.warnings:
            print(f"livedream: warning: {f.input}: {warning}", file=sys.stderr)
        if f.status == "done":
            resumed = f", {f.resumed} from an earlier run" if f.resumed else ""
            print(f"{f.output}: {f.frames} frames, {f.chunks} chunk{'s' * (f.chunks != 1)}{resumed}")
        elif f.status == "skipped":
            print(f"{f.output}: finished by an earlier run, skipped")
        elif f.status == "failed":
            print(f"livedream: error: {f.input}: {f.error}", file=sys.stderr)
    if summary.interrupted:
        print(f"livedream: interrupted: finished chunks are kept in {summary.manifest}; run the "
              "same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    failed = summary.failed
    if failed:
        names = ", ".join(f.input for f in failed)
        print(f"livedream: error: {len(failed)} of {len(summary.files)} files failed: {names}",
              file=sys.stderr)
        return EXIT_FAILED
    return 0


def _executor(args: argparse.Namespace) -> Any:
    if args.executor == "ray":
        from livedream.farm.ray_executor import RayExecutor

        return RayExecutor(args.address, workers=args.workers, retries=args.retries)
    from livedream.farm.local import LocalExecutor

    return LocalExecutor(args.workers)
