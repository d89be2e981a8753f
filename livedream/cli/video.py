"""`livedream video`: dream video files into video files, sound kept."""

from __future__ import annotations

import argparse
import json
import os
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
    no_empty_output_folder,
    output_paths,
    sigterm_as_interrupt,
    video_config_from_args,
    video_params,
)
from livedream.errors import InputError

__all__ = ["register", "run"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("video", help="dream video files, sound kept")
    p.add_argument("inputs", nargs="+", metavar="IN", help="video files or folders")
    p.add_argument("-o", "--output", required=True, help="output file, or folder for several")
    p.add_argument("--start", type=float, help="start at this many seconds")
    p.add_argument("--duration", type=float, help="dream only this many seconds")
    p.add_argument("--report", help="write a JSON report (fps, stage times, queues) here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dream_options(p, default_preset="realtime")
    add_video_options(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Exit 0; 2 for bad input (for one input file: a file that is no video too); 1 when a stage
    failed, or when some files of a folder or a list could not be read (each is named, the others
    are dreamed); 130 when interrupted."""
    inputs = expand_inputs(args.inputs, VIDEO_EXTENSIONS, "video")
    with no_empty_output_folder(args.output):
        pairs = output_paths(inputs, args.output, VIDEO_FILE_EXTENSIONS,
                             keep_ext=(".mp4", ".mkv", ".mov"), default_ext=".mp4")
        with sigterm_as_interrupt():
            return _dream(args, pairs)


def _dream(args: argparse.Namespace, pairs: list[tuple[str, str]]) -> int:
    from livedream.io.images import atomic_write, check_writable
    from livedream.pipeline import build_dreamers
    from livedream.video_job import dream_video

    for _, out in pairs:
        check_writable(out)
    if args.report:
        check_writable(args.report)
    cfg = video_config_from_args(args)
    dreamers = build_dreamers(cfg)
    params = video_params(cfg)
    single = len(args.inputs) == 1 and os.path.isfile(args.inputs[0])
    entries: list[dict[str, object]] = []
    failed: list[str] = []
    code = 0
    for src, out in pairs:
        try:
            result = dream_video(src, out, cfg, dreamers, start=args.start, duration=args.duration,
                                 metadata={"livedream": "; ".join(f"{k}={v}" for k, v in params.items())},
                                 progress=not args.quiet)
        except InputError as e:
            if single:
                raise
            print(f"livedream: error: {e}", file=sys.stderr)  # its message names the file
            entries.append({"input": src, "output": None, "error": str(e)})
            failed.append(src)
            continue
        entries.append({"input": src, "output": out, **result.report.as_dict(),
                        "stopped_early": result.stopped_early, "parameters": params,
                        "quality": result.quality})
        if result.failed is not None:
            print(f"livedream: error: {result.failed}; wrote the {result.frames} frames dreamed "
                  f"before it to {out}", file=sys.stderr)
            code = EXIT_FAILED
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
        body = entries[0] if len(entries) == 1 else {"files": entries}
        atomic_write(args.report, json.dumps(body, indent=2).encode())
    if failed and code == 0:
        print(f"livedream: error: {len(failed)} of {len(pairs)} files failed: {', '.join(failed)}",
              file=sys.stderr)
        code = EXIT_FAILED
    return code
