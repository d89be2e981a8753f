"""`livedream image`: dream still images, one file or folders of them."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from livedream.cli.common import (
    EXIT_FAILED,
    IMAGE_FILE_EXTENSIONS,
    add_dream_options,
    config_from_args,
    config_params,
    expand_inputs,
    no_empty_output_folder,
    output_paths,
)
from livedream.config import DreamConfig
from livedream.errors import InputError

__all__ = ["register", "run"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("image", help="dream still images")
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders")
    p.add_argument("-o", "--output", required=True, help="output file, or folder for several")
    p.add_argument("--guide", help="image whose features steer the dream")
    add_dream_options(p, default_preset="classic")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Exit 0; 2 for bad input (for one input file: a file that is no image too); 1 when some
    images of a folder or a list could not be read: each is named, the others are dreamed."""
    from livedream.io.images import IMAGE_EXTENSIONS

    cfg = config_from_args(args)
    inputs = expand_inputs(args.inputs, IMAGE_EXTENSIONS, "image")
    with no_empty_output_folder(args.output):
        pairs = output_paths(inputs, args.output, IMAGE_FILE_EXTENSIONS,
                             keep_ext=(".png", ".jpg", ".jpeg"), default_ext=".png")
        return _dream(args, cfg, pairs)


def _dream(args: argparse.Namespace, cfg: DreamConfig, pairs: list[tuple[str, str]]) -> int:
    from livedream.io.images import check_writable, read_image, write_image

    for _, out in pairs:
        check_writable(out)
    guide = read_image(args.guide) if args.guide else None
    # One input file: read it before the model loads, so a bad one is exit 2 at once.
    single = len(args.inputs) == 1 and os.path.isfile(args.inputs[0])
    first = read_image(pairs[0][0]) if single else None

    from livedream.dream import Dreamer, to_image, to_tensor
    from livedream.progress import progress_bar

    dreamer = Dreamer(cfg)
    if guide is not None:
        dreamer.set_guide(to_tensor(guide))
    params = config_params(cfg) | ({"guide": os.path.basename(args.guide)} if args.guide else {})
    bar = progress_bar(len(pairs), "images", enabled=len(pairs) > 1)
    failed = []
    for src, out in pairs:
        try:
            rgb = first if first is not None else read_image(src)
        except InputError as e:  # its message names the file
            bar.write(f"livedream: error: {e}", file=sys.stderr)
            failed.append(src)
        else:
            result = to_image(dreamer.dream(to_tensor(rgb)))[0]
            write_image(out, result, params | {"input": os.path.basename(src)})
        bar.update()
    bar.close()
    done = len(pairs) - len(failed)
    print(pairs[0][1] if len(pairs) == 1 else f"{done} images in {args.output}")
    if failed:
        print(f"livedream: error: {len(failed)} of {len(pairs)} images failed: {', '.join(failed)}",
              file=sys.stderr)
        return EXIT_FAILED
    return 0
