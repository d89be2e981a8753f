"""Memory and speed over a long input, file to file (not a test).

    python scripts/soak_video.py [--minutes 10] [--preset realtime] [--keep DIR]

Makes a 640x480 30 fps clip with sound, `--minutes` long (samples/box.mp4's frames over and over,
so there is a scene cut every 5 s, and a tone), runs `livedream video` on it in a subprocess,
samples that process's RSS every few seconds, and prints RSS over time, the growth from the
first to the last tenth of the run (flat means no leak), and the report's fps. The clip is made
with x264's `ultrafast` preset, so making it takes about a tenth of the dream's time.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "box.mp4"


def make_clip(path: Path, minutes: float) -> int:
    """Write the long clip; returns its frame count."""
    with av.open(str(SAMPLE)) as src:
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    count, rate = round(minutes * 60 * 30), 48000
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "20"})
        video.width, video.height, video.pix_fmt = 640, 480, "yuv420p"
        audio = out.add_stream("aac", rate=rate, layout="mono")
        samples_per_frame = rate // 30
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
            t = (np.arange(samples_per_frame) + i * samples_per_frame) / rate
            tone = (0.2 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)[None]
            chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = rate, i * samples_per_frame
            out.mux(audio.encode(chunk))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return count


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--preset", default="realtime")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--keep", help="keep the clip, output and report in this folder")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="livedream-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    clip, output, report = work / "long.mp4", work / "long_dreamed.mp4", work / "report.json"
    began = time.monotonic()
    count = make_clip(clip, args.minutes)
    print(f"clip: {count} frames with sound in {time.monotonic() - began:.0f} s", flush=True)
    cmd = [sys.executable, "-m", "livedream", "video", str(clip), "-o", str(output), "--quiet",
           "--preset", args.preset, "--report", str(report)]
    began = time.monotonic()
    proc = subprocess.Popen(cmd)
    samples: list[tuple[float, float]] = []
    while proc.poll() is None:
        rss = rss_mb(proc.pid)
        if rss is not None:
            samples.append((time.monotonic() - began, rss))
            if len(samples) % 12 == 1:
                print(f"{samples[-1][0]:7.0f} s  RSS {rss:7.1f} MB", flush=True)
        time.sleep(args.every)
    if proc.returncode != 0:
        sys.exit(f"livedream video exited with {proc.returncode}")
    data = json.loads(report.read_text())
    tenth = max(1, len(samples) // 10)
    first = float(np.median([r for _, r in samples[tenth:2 * tenth]]))  # after the warm-up
    last = float(np.median([r for _, r in samples[-tenth:]]))
    slope = np.polyfit([t for t, _ in samples[tenth:]], [r for _, r in samples[tenth:]], 1)[0] * 60
    print(f"{data['frames']} of {count} frames, {data['fps']} fps in the pipeline, "
          f"{count / (time.monotonic() - began):.1f} fps for the whole process "
          f"({time.monotonic() - began:.0f} s), dropped {data['dropped']}")
    print(f"RSS second tenth {first:.0f} MB -> last tenth {last:.0f} MB ({last - first:+.1f} MB), "
          f"fitted slope {slope:+.2f} MB/min, peak {max(r for _, r in samples):.0f} MB")
    print(f"busy seconds: {data['busy_seconds']}")


if __name__ == "__main__":
    main()
