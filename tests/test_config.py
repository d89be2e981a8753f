"""The configuration: checked values, presets (built in and from TOML), channel ranges."""

from __future__ import annotations

import pytest

from livedream import PRESETS, ConfigError, DreamConfig, LivedreamError, preset
from livedream.config import VIDEO_PRESETS, check_channel, load_presets, video_preset


@pytest.mark.parametrize(
    "fields, word",
    [
        (dict(iters=-1), "iters"),
        (dict(octaves=0), "octaves"),
        (dict(octave_scale=1.0), "octave scale"),
        (dict(step=0.0), "step"),
        (dict(step=-1.5), "step"),
        (dict(jitter=-1), "jitter"),
        (dict(tile=32), "tile"),
        (dict(tile=-512), "tile"),
        (dict(precision="fp8"), "precision"),
        (dict(channel=-1), "channel"),
        (dict(layer_weights=(1.0,)), "layer weights"),
        (dict(layers=("block5", "block9"), layer_weights=(1.0, 2.0, 3.0)), "layer weights"),
    ],
)
def test_invalid_config_values(fields, word):
    with pytest.raises(ConfigError, match=word) as err:
        DreamConfig(**fields)
    assert isinstance(err.value, ValueError) and isinstance(err.value, LivedreamError)


def test_boundary_values_are_valid():
    cfg = DreamConfig(iters=0, octaves=1, octave_scale=1.01, jitter=0, tile=64, channel=0)
    assert cfg.replace(tile=0).tile == 0


def test_presets():
    cfg = preset("classic")
    assert (cfg.iters, cfg.step, cfg.octaves, cfg.octave_scale) == (10, 1.5, 4, 1.4)
    assert PRESETS["classic"] == dict(iters=10, step=1.5, octaves=4, octave_scale=1.4)
    cfg = preset("classic", DreamConfig(layers=("block5",), seed=7), iters=None, step=2.0)
    assert (cfg.iters, cfg.step, cfg.layers, cfg.seed) == (10, 2.0, ("block5",), 7)
    with pytest.raises(ConfigError, match="unknown preset 'nope'.*classic"):
        preset("nope")
    with pytest.raises(ConfigError, match="iters"):
        preset("classic", iters=-3)


def test_video_presets_and_overrides():
    rt = video_preset("realtime")
    assert rt.warm and rt.dream.iters == VIDEO_PRESETS["realtime"]["iters"]
    assert video_preset("realtime", iters=3, dream_width=None).dream.iters == 3
    classic = video_preset("classic")
    assert not classic.warm and classic.dream_width is None and classic.dream.octaves == 4
    devices = video_preset("realtime", devices="cpu, cpu").devices
    assert devices == ("cpu", "cpu")
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        video_preset("nope")
    with pytest.raises(ConfigError, match="unknown parameter.*colour"):
        video_preset("mine", {"mine": {"colour": 3}})
    with pytest.raises(ConfigError, match="decay must be in 0..1"):
        video_preset("realtime", decay=2.0)


def test_presets_from_toml(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[dreamy]\ndream_width = 400\nlayers = ["block11"]\niters = 2\n')
    extra = load_presets(str(path))
    cfg = video_preset("dreamy", extra)
    assert (cfg.dream_width, cfg.dream.layers, cfg.dream.iters) == (400, ("block11",), 2)
    path.write_text("[broken\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_presets(str(path))
    with pytest.raises(ConfigError, match="cannot read presets"):
        load_presets(str(tmp_path / "missing.toml"))


def test_channel_ranges():
    check_channel(None, "block9", 112)
    check_channel(111, "block9", 112)
    message = r"filter 112 out of range: layer block9 has 112 channels \(0\.\.111\)"
    with pytest.raises(ConfigError, match=message):
        check_channel(112, "block9", 112, "filter")
