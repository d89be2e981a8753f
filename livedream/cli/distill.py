"""`livedream distill`: train a student, a small network that dreams in one pass what the engine
dreams by gradient ascent, from a folder of images and videos.

Exit codes: 0 the weights are written, 2 bad input (one line), 130 stopped (Ctrl-C / SIGTERM;
the same command resumes).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from livedream.cli.common import EXIT_INTERRUPTED, add_dream_options, config_from_args, setup_logging
from livedream.errors import InputError

__all__ = ["register", "run"]

EPILOG = """\
The teacher is the engine itself (by default the classic parameters, the model's default layer):
each view (a 4:3 crop of a picture at the scale of a 640x480 frame, mirrored or not, colours
jittered) is dreamed once and kept in the work folder (OUTPUT.work/ unless --work is given); then
the student trains on random squares of those pairs. Every tenth source is held back: the
validation strength (how much of the teacher's gain in the layer's objective the student reaches
on pictures it never saw, 1.0 = as much) is shown as it trains and kept in WORK/curve.json.
Stopping (Ctrl-C) keeps everything; the same command resumes. Hours on a laptop CPU.
examples:
  livedream distill data/train -o my-student.pt --steps 20000
  livedream distill photos/ clips/ -o eyes.pt --layer block11 --channel 7
  livedream video clip.mp4 -o out.mp4 --student my-student.pt
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("distill", help="train a one-pass student dreamer from images and videos",
                              description="Train a student network to dream like the engine, in one pass.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="+", metavar="DATA", help="folders or files of images and videos")
    p.add_argument("-o", "--output", required=True, help="the student's weights file (.pt)")
    p.add_argument("--work", help="work folder for the teacher pairs and the checkpoint "
                                  "(default: OUTPUT.work beside the output)")
    p.add_argument("--guide", help="image whose features steer the teacher's dream")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=30_000, help="training steps (default 30000)")
    g.add_argument("--batch", type=int, default=6, help="crops per step (default 6)")
    g.add_argument("--crop", type=int, default=192, help="side of a training crop, pixels (default 192)")
    g.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 0.001)")
    g.add_argument("--schedule-from", type=int, default=0, metavar="STEP",
                   help="the learning rate's cosine decay starts at this step, at --lr (default 0; "
                        "the step a run was resumed at: fine-tune it, e.g. with other loss weights)")
    g.add_argument("--objective-weight", type=float, metavar="W",
                   help="weight of the layer's objective in the loss (default: the recipe's, "
                        "livedream/student/losses.py)")
    g.add_argument("--texture-weight", type=float, metavar="W",
                   help="weight of the texture statistics in the loss (default: the recipe's)")
    g.add_argument("--stability-weight", type=float, metavar="W",
                   help="weight of the stability term (the residual moves with the picture: "
                        "less flicker in video; default: the recipe's)")
    g.add_argument("--views-per-image", type=int, default=16, help="views cut from each image (16)")
    g.add_argument("--frames-per-video", type=int, default=24, help="frames taken from each video (24)")
    g.add_argument("--view-size", default="640x480", help="size of a view, WxH (default 640x480)")
    g.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    add_dream_options(p, default_preset="classic")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from livedream.distill.run import DistillPlan, distill
    from livedream.distill.train import TrainConfig
    from livedream.io.images import check_writable
    from livedream.student.losses import LossWeights

    setup_logging(args.quiet)
    if not args.output.lower().endswith(".pt"):
        raise InputError(f"the student's weights file must end in .pt, got {args.output}")
    check_writable(args.output)
    size = _size(args.view_size)
    weights = {k: getattr(args, f"{k}_weight") for k in ("objective", "texture", "stability")}
    checks = [(args.steps >= 1, f"--steps must be >= 1, got {args.steps}"),
              (args.batch >= 1, f"--batch must be >= 1, got {args.batch}"),
              (64 <= args.crop <= min(size) - 16,
               f"--crop must be in 64..{min(size) - 16} (16 px less than the view), got {args.crop}"),
              (args.lr > 0, f"--lr must be > 0, got {args.lr}"),
              (0 <= args.schedule_from < args.steps,
               f"--schedule-from must be in 0..{args.steps - 1} (below --steps), got {args.schedule_from}"),
              (all(w is None or 0 <= w <= 100 for w in weights.values()),
               "--objective-weight, --texture-weight and --stability-weight must be in 0..100"),
              (args.views_per_image >= 1 and args.frames_per_video >= 1, "views and frames must be >= 1")]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    plan = DistillPlan(
        data=tuple(args.data), output=args.output, teacher=config_from_args(args), guide=args.guide,
        work=args.work, views_per_image=args.views_per_image, frames_per_video=args.frames_per_video,
        view_size=size, train=TrainConfig(
            steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr,
            schedule_from=args.schedule_from,
            weights=LossWeights(**{k: w for k, w in weights.items() if w is not None})),
        progress=not args.quiet, command="livedream " + shlex.join(sys.argv[1:]))
    result = distill(plan)
    if result.interrupted:
        print(f"livedream: interrupted at step {result.steps}: run the same command to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    strength = "" if result.strength is None else f", validation strength {result.strength:.2f}"
    print(f"{result.output}: {result.steps} steps, {result.seconds / 60:.0f} min of training, "
          f"{result.pairs} teacher pairs{strength}")
    return 0


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    if not (w.isdigit() and h.isdigit()) or not (64 <= int(w) <= 4096 and 64 <= int(h) <= 4096):
        raise InputError(f"--view-size must be WxH with sides in 64..4096, got {text!r}")
    return int(w), int(h)
