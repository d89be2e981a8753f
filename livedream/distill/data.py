"""Teacher pairs for distillation: camera-sized frames cut from photos and videos, each dreamed by
the engine (the teacher), kept on disk so a stopped run resumes where it was.

A *view* is a 4:3 crop covering a random share of a picture, resized to 640x480 (the scale of a
webcam frame, where the student will work), maybe mirrored, with a little colour jitter. The plan
of views (which source, which frame, which crop) is a function of the sources and the seed, so
pair `i` is the same pair in every run; a pair is one PNG file holding the view and its dream side
by side, written atomically. Pairs of every tenth source (by sorted path) are held back for
validation: pictures the student never trains on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from livedream.errors import InputError
from livedream.io.images import IMAGE_EXTENSIONS, atomic_write, decode_image, encode_image, read_image

__all__ = ["FRAME_SIZE", "Source", "View", "PairStore", "find_sources", "plan_views", "render_view"]

FRAME_SIZE = (640, 480)  # (w, h) of a view: the scale of a camera frame
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
HOLDOUT_EVERY = 10  # every tenth source is for validation only


@dataclass(frozen=True)
class Source:
    path: str
    video: bool
    holdout: bool  # validation only
    # The path below the folder it was found in (a file given by itself: its name): what seeds
    # its views, so the same data planned from another place gives the same views.
    name: str = ""


@dataclass(frozen=True)
class View:
    """One planned pair: where its picture comes from and how it is cut."""

    index: int
    source: Source
    frame: float  # video: position in 0..1 of its duration; image: 0
    seed: int  # the crop, flip and colour jitter


def find_sources(paths: Sequence[str]) -> list[Source]:
    """Image and video files among `paths` (folders searched recursively), sorted. InputError when
    a path is missing or nothing usable is found."""
    names: dict[str, str] = {}  # path -> name
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                kinds = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
                for f in files:
                    if f.lower().endswith(kinds) and not f.startswith("."):
                        full = os.path.join(root, f)
                        names.setdefault(full, os.path.relpath(full, path))
        elif os.path.isfile(path):
            names.setdefault(path, os.path.basename(path))
        else:
            raise InputError(f"training data not found: {path}")
    found = sorted(names)
    if not found:
        raise InputError(f"no images or videos in {', '.join(paths)}")
    return [Source(p, p.lower().endswith(VIDEO_EXTENSIONS), len(found) > 1 and i % HOLDOUT_EVERY == 0,
                   names[p]) for i, p in enumerate(found)]


def plan_views(sources: Sequence[Source], per_image: int, per_video: int, seed: int) -> list[View]:
    """`per_image` views of each image and `per_video` of each video (frames spread evenly), in an
    order that interleaves the sources, so any prefix of the plan covers them all."""
    rounds: list[list[tuple[Source, float]]] = []
    for source in sources:
        n = per_video if source.video else per_image
        for k in range(n):
            while len(rounds) <= k:
                rounds.append([])
            rounds[k].append((source, (k + 0.5) / n if source.video else 0.0))
    views: list[View] = []
    for items in rounds:
        for source, frame in items:
            key = f"{seed}:{source.name or source.path}:{frame}:{len(views)}"
            digest = hashlib.sha256(key.encode()).digest()
            views.append(View(len(views), source, frame, int.from_bytes(digest[:4], "little")))
    return views


def render_view(view: View, picture: np.ndarray, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """The view's crop of `picture` (H, W, 3) uint8 RGB: 4:3, 35-100% of the largest such crop,
    resized to `size`, maybe mirrored, brightness / contrast / saturation jittered a little."""
    rng = np.random.default_rng(view.seed)
    h, w = picture.shape[:2]
    aspect = size[0] / size[1]
    full_w = min(w, h * aspect)
    crop_w = full_w * rng.uniform(0.35, 1.0)
    crop_h = crop_w / aspect
    x0 = rng.uniform(0, w - crop_w)
    y0 = rng.uniform(0, h - crop_h)
    box = picture[int(y0):int(y0 + crop_h), int(x0):int(x0 + crop_w)]
    shrink = box.shape[1] > size[0]
    rgb = cv2.resize(box, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
    x = rgb.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.7, 1.3)  # saturation
    x = (x - 127.5) * rng.uniform(0.8, 1.2) + 127.5 + rng.uniform(-20, 20)  # contrast, brightness
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def read_picture(view: View) -> np.ndarray:
    """The source picture of `view`: the image, or the video's frame at `view.frame`."""
    if not view.source.video:
        rgb = read_image(view.source.path)
        return np.repeat(rgb[:, :, None], 3, axis=2) if rgb.ndim == 2 else rgb
    from livedream.io.video import VideoReader

    with VideoReader(view.source.path) as reader:
        at = view.frame * max(reader.info.duration, 0.0)
    with VideoReader(view.source.path, start=at) as reader:
        last = next((frame.rgb for frame in reader.frames()), None)
    if last is None:
        raise InputError(f"no frame could be decoded from {view.source.path}")
    return last


class PairStore:
    """A folder of teacher pairs, `pairs/NNNNNN.png` (the view left, its dream right), and
    `teacher.json`, the teacher's parameters: a folder made for another teacher is refused."""

    def __init__(self, folder: str, teacher: dict[str, str]) -> None:
        self.folder = Path(folder)
        self.pairs = self.folder / "pairs"
        self.pairs.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "teacher.json"
        if meta.exists():
            stored = json.loads(meta.read_text())
            if stored != teacher:
                differ = sorted(k for k in set(stored) | set(teacher) if stored.get(k) != teacher.get(k))
                raise InputError(f"{folder} holds pairs of another teacher (differs in "
                                 f"{', '.join(differ)}); use another --work folder")
        else:
            atomic_write(str(meta), (json.dumps(teacher, indent=1, sort_keys=True) + "\n").encode())

    def path(self, index: int) -> Path:
        return self.pairs / f"{index:06d}.png"

    def has(self, index: int) -> bool:
        return self.path(index).exists()

    def put(self, index: int, view: np.ndarray, dream: np.ndarray) -> None:
        atomic_write(str(self.path(index)), encode_image(np.hstack([view, dream]), ".png"))

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(view, dream), each (H, W, 3) uint8 RGB."""
        both = decode_image(self.path(index).read_bytes(), str(self.path(index)))
        w = both.shape[1] // 2
        return both[:, :w], both[:, w:]


def make_pairs(views: Sequence[View], store: PairStore, dream: Callable[[np.ndarray], np.ndarray],
               size: tuple[int, int] = FRAME_SIZE) -> Iterator[int]:
    """Dream every view not yet in `store` with `dream` (RGB uint8 -> RGB uint8, the teacher),
    at `size`, yielding the index of each pair as it is stored."""
    for view in views:
        if store.has(view.index):
            continue
        rgb = render_view(view, read_picture(view), size)
        store.put(view.index, rgb, dream(rgb))
        yield view.index


def teacher_params(cfg: object, guide: str | None = None) -> dict[str, str]:
    """The teacher's identity, as stored with its pairs and in the student's weights: every
    DreamConfig field that changes the dream (not where or how precisely it runs)."""
    from dataclasses import asdict

    skip = {"device", "precision"}
    params = {k: str(v) for k, v in asdict(cfg).items() if k not in skip}  # type: ignore[call-overload]
    if guide is not None:
        params["guide"] = hashlib.sha256(Path(guide).read_bytes()).hexdigest()[:16]
    return params
