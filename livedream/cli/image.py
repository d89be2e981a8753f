"""`livedream image`: dream still images, one file or folders of them."""

from __future__ import annotations

import argparse
import os
from typing import Any

from livedream.cli.common import (
    add_dream_options,
    config_from_args,
    config_params,
    expand_inputs,
    output_paths,
)

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
    from livedream.io.images import (
        IMAGE_EXTENSIONS,
        check_image_extension,
        check_image_file,
        check_writable,
        read_image,
        write_image,
    )

    cfg = config_from_args(args)
    inputs = expand_inputs(args.inputs, IMAGE_EXTENSIONS, "image")
    for src in inputs:  # a cheap look at each file's signature, before any work is done
        check_image_file(src)
    pairs = output_paths(inputs, args.output, IMAGE_EXTENSIONS, keep_ext=(".png", ".jpg", ".jpeg"),
                         default_ext=".png")
    for _, out in pairs:
        check_writable(out)
        check_image_extension(out)
    guide = read_image(args.guide) if args.guide else None

    from livedream.dream import Dreamer, to_image, to_tensor
    from livedream.progress import progress_bar

    dreamer = Dreamer(cfg)
    if guide is not None:
        dreamer.set_guide(to_tensor(guide))
    params = config_params(cfg) | ({"guide": os.path.basename(args.guide)} if args.guide else {})
    bar = progress_bar(len(pairs), "images", enabled=len(pairs) > 1)
    for src, out in pairs:
        rgb = read_image(src)
        result = to_image(dreamer.dream(to_tensor(rgb)))[0]
        write_image(out, result, params | {"input": os.path.basename(src)})
        bar.update()
    bar.close()
    print(pairs[0][1] if len(pairs) == 1 else f"{len(pairs)} images in {args.output}")
    return 0
