"""A model's layers and their channel counts, for listing and for checking requests (the app, live
steering)."""

from __future__ import annotations

import functools
import threading

from livedream.models import LayerInfo, model_spec

__all__ = ["LayerTable", "layer_table"]


@functools.cache
def layer_table(model: str) -> LayerTable:
    """The (shared, thread-safe) LayerTable of `model`."""
    return LayerTable(model)


class LayerTable:
    """Layers of one model, from its bare architecture (no weights loaded): names, paths, channels.

    Inside the program a layer has one form, its *canonical* name: the friendly name where it has
    one (`block9`), else its dotted module path (`blocks.9._depthwise_conv`). The edges (the
    command line, the app's requests, live steering) turn what users give into it with
    `canonical`; the engine turns it into a module path when it loads a network.

    `resolve` accepts either form and raises ModelError (a ValueError) with the valid names
    otherwise; `channels` counts a layer's channels (the range of "Filter").
    """

    def __init__(self, model: str) -> None:
        spec = model_spec(model)
        self.model = model
        self.default = spec.default_layer
        self._net = spec.arch()
        self.infos: list[LayerInfo] = self._net.layers()
        self._channels = {info.path: info.channels for info in self.infos}
        self._lock = threading.Lock()  # `channels` of a dotted path runs the bare net once

    def resolve(self, layer: str | None) -> str:
        """The dotted module path of `layer` (None: the default layer); ModelError (a ValueError)."""
        return self._net.resolve(layer or self.default)

    def canonical(self, layer: str | None) -> str:
        """The canonical name of `layer` (None: the default layer); ModelError if unknown."""
        return self.name(self.resolve(layer))

    def name(self, path: str) -> str:
        """The friendly name of `path` if it has one, else the path."""
        return next((info.name for info in self.infos if info.path == path), path)

    def channels(self, layer: str | None) -> int:
        path = self.resolve(layer)
        with self._lock:
            if path not in self._channels:
                try:
                    self._channels[path] = self._net.channels(path)
                except Exception as e:  # noqa: BLE001 - e.g. a container module with no tensor out
                    raise ValueError(f"layer {layer!r} cannot be dreamed: {type(e).__name__}") from None
            return self._channels[path]

    def as_json(self) -> dict[str, object]:
        return {
            "model": self.model, "default": self.default,
            "layers": [{"name": i.name, "path": i.path, "channels": i.channels, "stride": i.stride}
                       for i in self.infos],
        }
