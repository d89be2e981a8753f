"""The staged pipeline on synthetic frames: order, counts, warm starts, devices, failures."""

from __future__ import annotations

import time

import numpy as np
import pytest

from livedream.config import video_preset
from livedream.frame import Frame, dream_size
from livedream.io.sinks import ListSink, NullSink
from livedream.io.sources import SyntheticSource
from livedream.pipeline import Pipeline, StageError, build_dreamers, dreamer_for
from livedream.temporal import warping_error

# One replica: a single warm-start chain (the default, `auto`, is one replica per core).
SMALL = dict(dream_width=96, iters=1, octaves=1, cold_iters=3, jitter=2, step=3.0, devices="cpu")


def realtime(**fields):
    """`realtime` by gradient ascent (`--student none`): these tests are about its warm starts;
    the student's chain is tested in test_student.py."""
    return video_preset("realtime", **fields).replace(student=None)


def run(cfg, frames=12, width=128, height=96, **kw):
    sink = ListSink()
    src = SyntheticSource(width, height, frames=frames)
    report = Pipeline(src, [sink], cfg, build_dreamers(cfg), **kw).run()
    return sink.frames, report, src


def test_every_frame_comes_out_in_order_and_dreamed():
    frames, report, src = run(realtime(**SMALL))
    assert [f.index for f in frames] == list(range(12))
    assert report.frames_in == report.frames_out == 12 and report.dropped == 0
    for f in frames:
        assert f.out.shape == (96, 128, 3) and f.out.dtype == np.uint8
        assert np.abs(f.out.astype(int) - src.frame(f.index).astype(int)).mean() > 1.0
    assert report.cold_starts == 1  # the first frame; the rest warm-start
    assert set(report.busy_seconds) >= {"source", "preprocess", "dream", "postprocess", "sink"}


def test_round_robin_over_two_cpu_replicas_keeps_order():
    cfg = realtime(**dict(SMALL, devices="cpu,cpu", batch=2))
    frames, report, _ = run(cfg, frames=15)
    assert [f.index for f in frames] == list(range(15))
    assert 1 <= report.cold_starts <= 2 * 2  # frames dealt before any dream had finished
    assert report.queue_high_water["dream0"] >= 1 and report.queue_high_water["dream1"] >= 1


class _Jittery:
    """A Dreamer whose dreams take a random extra time, so workers finish in a random order."""

    def __init__(self, dreamer, rng):
        self._dreamer, self._rng = dreamer, rng

    def dream(self, x, cfg=None):
        time.sleep(float(self._rng.uniform(0, 0.03)))
        return self._dreamer.dream(x, cfg)

    def __getattr__(self, name):
        return getattr(self._dreamer, name)


@pytest.mark.parametrize("batch", [1, 2])
def test_two_replicas_give_the_same_frames_whatever_their_timing(batch):
    cfg = realtime(**dict(SMALL, devices="cpu,cpu", batch=batch))
    dreamers = build_dreamers(cfg)
    outs = []
    for seed in range(3):  # another order of finishing each time
        rng = np.random.default_rng(seed)
        sink = ListSink()
        Pipeline(SyntheticSource(128, 96, frames=14), [sink], cfg,
                 [_Jittery(d, rng) for d in dreamers]).run()
        assert [f.index for f in sink.frames] == list(range(14))
        outs.append(np.stack([f.out for f in sink.frames]))
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
    # ...and the two workers still feed one chain: no frame-to-frame jump between them
    seq = outs[0].astype(int)
    diffs = [np.abs(a - b).mean() for a, b in zip(seq[4:-1], seq[5:], strict=True)]
    assert max(diffs) < 3 * min(diffs) + 2, diffs


def test_warm_started_frames_are_temporally_closer_than_classic():
    warm, _, src = run(realtime(**SMALL), frames=16)
    cold, _, _ = run(realtime(warm=False, **SMALL), frames=16)
    sources = [src.frame(i) for i in range(16)]
    warm_err = warping_error([f.out for f in warm], sources)
    cold_err = warping_error([f.out for f in cold], sources)
    assert warm_err < cold_err, (warm_err, cold_err)


def test_residual_does_not_run_away():
    frames, _, src = run(realtime(**SMALL), frames=40)
    diffs = [np.abs(f.out.astype(float) - src.frame(f.index)).mean() for f in frames]
    assert max(diffs[20:]) < 3 * np.median(diffs[5:20]) + 1, diffs


def test_a_failing_sink_stops_the_pipeline_with_the_stage_name():
    class Broken:
        def __init__(self):
            self.count = 0

        def write(self, frame: Frame) -> None:
            self.count += 1
            if self.count == 3:
                raise OSError("No space left on device")

    cfg = realtime(**SMALL)
    sink = Broken()
    p = Pipeline(SyntheticSource(64, 48, frames=50), [sink], cfg, build_dreamers(cfg))
    with pytest.raises(StageError, match="sink stage failed: No space left on device"):
        p.run()
    assert sink.count == 3  # nothing written after the failure


def test_a_failing_source_names_the_source_stage():
    def frames():
        yield Frame(0, 0.0, np.zeros((48, 64, 3), np.uint8))
        raise RuntimeError("camera unplugged")

    cfg = realtime(**SMALL)
    with pytest.raises(StageError, match="source stage failed: camera unplugged"):
        Pipeline(frames(), [NullSink()], cfg, build_dreamers(cfg)).run()


def test_stop_ends_a_long_run_early():
    cfg = realtime(**SMALL)
    sink = NullSink()
    holder: dict[str, Pipeline] = {}

    def on_frame(frame: Frame) -> None:
        if frame.index == 4:
            holder["p"].stop()

    p = Pipeline(SyntheticSource(64, 48, frames=10_000), [sink], cfg, build_dreamers(cfg),
                 on_frame=on_frame)
    holder["p"] = p
    report = p.run()
    assert 5 <= sink.count < 100 and report.frames_out == sink.count


def test_live_policy_drops_frames_it_cannot_keep_up_with():
    cfg = realtime(**SMALL)
    src = SyntheticSource(128, 96, frames=60, fps=300, paced=True)
    sink = ListSink()
    report = Pipeline(src, [sink], cfg, build_dreamers(cfg), live=True).run()
    indices = [f.index for f in sink.frames]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert report.dropped + src.skipped > 0
    assert len(indices) + report.dropped + src.skipped == 60


def test_dream_size_keeps_aspect_and_never_upscales():
    assert dream_size(640, 480, 320) == (320, 240)
    assert dream_size(200, 100, 320) == (200, 100)
    assert dream_size(641, 479, None) == (641, 479)


def test_rotating_tiles_cover_the_frame_in_turn():
    from livedream.pipeline import tile_box

    h, w = 96, 128
    covered = np.zeros((h, w), int)
    for seq in range(4):
        y0, y1, x0, x1 = tile_box(seq, 4, h, w)
        covered[y0:y1, x0:x1] += 1
    assert (covered == 1).all()  # four frames: every pixel once
    assert tile_box(4, 4, h, w) == tile_box(0, 4, h, w)


def test_the_detail_preset_dreams_full_size_one_tile_per_frame():
    cfg = video_preset("detail", **dict(SMALL, dream_width=None, devices="cpu", tiles=4))
    frames, report, src = run(cfg, frames=10, width=128, height=96)
    assert [f.index for f in frames] == list(range(10)) and report.cold_starts == 1
    assert frames[0].residual.shape == (96, 128, 3)  # full size: no upsampling
    changes = [np.abs(f.out.astype(int) - src.frame(f.index).astype(int)).mean() for f in frames]
    assert min(changes) > 1.0, changes


def test_replicas_for_another_dream_are_rebuilt_and_the_run_finishes_with_the_same_frames():
    import threading

    cfg = realtime(**dict(SMALL, devices="cpu,cpu"))
    given = build_dreamers(cfg.replace(student="auto"))  # the shipped student's replicas
    assert all(getattr(d, "student_path", None) for d in given)
    calls = []

    def late_second(config, device):  # the second worker gets its replica after the first dreamed
        calls.append(device)
        if len(calls) == 2:
            time.sleep(1.0)
        return dreamer_for(config, device)

    sink = ListSink()
    pipeline = Pipeline(SyntheticSource(128, 96, frames=10), [sink], cfg, given, dreamer_for=late_second)
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    runner.join(timeout=60)
    if runner.is_alive():  # the workers' chain deadlocked (each worker reset it when rebuilding)
        pipeline.stop()
        pytest.fail("the run did not finish")
    assert len(calls) == 2 and not any(getattr(d, "student_path", None) for d in pipeline.dreamers)
    expected, _, _ = run(cfg, frames=10)
    assert [f.index for f in sink.frames] == list(range(10))
    assert all(np.array_equal(a.out, b.out) for a, b in zip(sink.frames, expected, strict=True))
