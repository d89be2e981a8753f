"""Live steering: the Control checks every change against the network and applies it whole."""

from __future__ import annotations

import threading

import pytest

from livedream.config import ConfigError, video_preset
from livedream.control import STEERABLE, Control


@pytest.fixture()
def cfg():
    return video_preset("realtime", dream_width=96, iters=1)


def test_control_refuses_a_layer_or_channel_the_network_lacks_and_keeps_its_config(cfg):
    control = Control(cfg)
    before = control.config
    with pytest.raises(ConfigError, match="unknown layer"):
        control.update(layer="block99")
    with pytest.raises(ConfigError, match="out of range"):
        control.update(layer="block3", channel=10_000)
    assert control.config == before and control.version == 0
    assert control.update(layer="block3", channel=5).dream.channel == 5


def test_layers_are_kept_in_their_canonical_form(cfg):
    control = Control(cfg)
    assert control.update(layer="_blocks.10").dream.layers == ("block10",)  # friendly where it has one
    assert control.params()["layer"] == "block10"


def test_a_preset_replaces_the_parameters_but_keeps_the_network(cfg):
    control = Control(cfg.replace(dream=cfg.dream.replace(layers=("block5",))))
    new = control.update(preset="balanced", strength=2.0)
    balanced = video_preset("balanced")
    assert new.dream.iters == balanced.dream.iters and new.dream_width == balanced.dream_width
    assert new.dream.layers == ("block5",) and new.strength == 2.0
    with pytest.raises(ConfigError, match="unknown preset"):
        control.update(preset="nope")


def test_unknown_names_and_bad_values_change_nothing(cfg):
    control = Control(cfg)
    with pytest.raises(ConfigError, match="cannot steer colour"):
        control.update(colour=3)
    with pytest.raises(ConfigError, match="iters must be >= 0"):
        control.update(iters=-1, strength=2.0)
    assert control.config == cfg and control.version == 0
    assert set(control.params()) == set(STEERABLE) - {"preset"}


def test_listeners_hear_every_change_and_updates_are_atomic(cfg):
    control = Control(cfg)
    heard = []
    control.subscribe(heard.append)

    def steer(k: int) -> None:
        for i in range(20):
            control.update(iters=1 + (k + i) % 3, strength=0.5 + 0.1 * k)

    threads = [threading.Thread(target=steer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert control.version == 80 and len(heard) == 80
    assert heard[-1] == control.config


@pytest.mark.parametrize("model, layer", [("effnet-lite0", "block9"), ("googlenet", "inception4c")])
def test_params_name_the_default_layer_when_none_was_given(model, layer):
    control = Control(video_preset("realtime", model=model))
    assert control.config.dream.layers in (None, ())  # nothing given: the network's default
    assert control.params()["layer"] == layer
