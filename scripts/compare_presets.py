"""The same frames dreamed by each way of dreaming video, side by side, labelled: a PNG for
BENCHMARKS.md, so a reader can judge with their own eyes what the strength numbers say.

    python scripts/compare_presets.py [--clip samples/box.mp4] [--frames 30,60] [-o docs/compare.png]

Rows: the input, classic (every frame from scratch at full size), realtime at fixed settings
(the shipped student, one pass, where one ships), realtime by gradient ascent (`--student none`:
one step at 320 px), detail (one full-size tile per frame), realtime with adaptive quality on a
30 fps pace, and realtime by gradient ascent at 480 px (one step per frame, the gradient
ladder's rung on a faster machine).
Each warm preset runs from the clip's first frame, so its warm start has built up by then.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livedream.adaptive import QualityController  # noqa: E402
from livedream.config import VideoConfig, video_preset  # noqa: E402
from livedream.control import Control  # noqa: E402
from livedream.frame import Frame  # noqa: E402
from livedream.io.sinks import ListSink  # noqa: E402
from livedream.io.video import VideoReader  # noqa: E402
from livedream.pipeline import Pipeline, build_dreamers  # noqa: E402
from livedream.student import student_for  # noqa: E402


def dreamed(frames: list[Frame], cfg: VideoConfig, keep: list[int], pace: float | None = None
            ) -> list[np.ndarray]:
    """The frames `keep` of the clip dreamed with `cfg` (from its first frame on)."""
    last = max(keep)
    sink = ListSink()
    control = Control(cfg)
    pipeline = Pipeline(iter([Frame(f.index, f.time, f.rgb, f.pts) for f in frames[: last + 1]]),
                        [sink], control, build_dreamers(cfg))
    if pace is not None:
        quality = QualityController(control, pipeline.source_kind(), lambda: pace,
                                    workers=len(pipeline.dreamers))
        pipeline.on_frame = lambda _f: quality.follow(pipeline, pipeline.source_kind())
    pipeline.run()
    return [sink.frames[k].image for k in keep]


def label(img: np.ndarray, text: str) -> np.ndarray:
    out = np.ascontiguousarray(img[:, :, ::-1]).copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 28), (0, 0, 0), -1)
    cv2.putText(out, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", default="samples/box.mp4")
    p.add_argument("--frames", default="30,75", help="frame indices to show (comma-separated)")
    p.add_argument("-o", "--output", default="docs/compare.png")
    p.add_argument("--width", type=int, default=480, help="width of each picture in the sheet")
    args = p.parse_args()
    keep = [int(v) for v in args.frames.split(",")]
    with VideoReader(args.clip) as reader:
        frames = [f for f in reader.frames() if f.index <= max(keep)]
    rows: list[tuple[str, list[np.ndarray]]] = [("input", [frames[k].rgb for k in keep])]
    classic = video_preset("classic")
    rows.append(("classic (every frame from scratch)", dreamed([frames[k] for k in keep], classic,
                                                               list(range(len(keep))))))
    fixed = video_preset("realtime", adaptive=False)
    gradient = fixed.replace(student=None)
    if student_for(fixed) is not None:
        rows.append(("realtime, fixed (the student, one pass)", dreamed(frames, fixed, keep)))
    rows.append(("realtime --student none (320 px)", dreamed(frames, gradient, keep)))
    rows.append(("detail (one full-size tile per frame)", dreamed(frames, video_preset("detail"), keep)))
    rows.append(("realtime, adaptive at a 30 fps pace", dreamed(frames, video_preset("realtime"), keep,
                                                               pace=30.0)))
    rows.append(("--student none at 480 px (faster machine)",
                 dreamed(frames, gradient.replace(dream_width=480), keep)))
    h, w = frames[0].rgb.shape[:2]
    size = (args.width, round(h * args.width / w))
    sheet = np.vstack([np.hstack([label(cv2.resize(img, size, interpolation=cv2.INTER_AREA),
                                        f"{name}, frame {k}") for img, k in zip(imgs, keep, strict=True)])
                       for name, imgs in rows])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.output, sheet)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
