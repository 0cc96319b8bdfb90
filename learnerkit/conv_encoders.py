"""Convolutional encoders of the default modules, framework-neutral: which observations get
one, its layers (``ConvStack``), and the ``model_config`` defaults of a pixel module.

An image observation is a 3-D ``Box`` of ``uint8`` in HWC order (what Atari, MiniGrid's
pixel wrappers and ``learnerkit/PixelGrid-v0`` return); its default module runs a stack of
convolutions (no padding, each followed by ``conv_activation``) before the ``hiddens``
layers, and divides the pixels by 255 inside the module, so that observations travel as
``uint8`` (a quarter of float32's bytes) from the env to the learner. ``conv_filters``
(RLlib's name and format, ``[[channels, kernel, stride], ...]``) picks the stack, for a
float 3-D Box too; ``conv_filters=[]`` turns the encoder off (an MLP on the flattened
pixels).

Both frameworks and the env runners' numpy copy compute the same function with the same
weight names: ``<tower>_conv.<2i>.weight`` (torch, ``[out, in, k, k]``) or ``.kernel`` (TF,
``[k, k, in, out]``) and ``.bias``, towers ``pi_conv`` and ``vf_conv``, or one ``conv``
with ``vf_share_layers``; features are flattened in HWC order in every framework. The
recurrent module (``use_lstm``) puts the same stack before each trunk's encoder: ``conv``,
and ``vf_conv`` unless ``vf_share_layers``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from learnerkit.errors import ConfigError
from learnerkit.model_config import MODEL_CONFIG_DEFAULTS, resolve_model_config

__all__ = [
    "CONV_DEFAULTS",
    "NATURE_CNN_FILTERS",
    "SMALL_IMAGE_FILTERS",
    "ConvStack",
    "conv_stack",
    "is_image_space",
    "module_config_for",
]

NATURE_CNN_FILTERS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
"""Mnih et al. 2015's stack ("Nature CNN"), followed by 512 units: the default for images
of 64 pixels a side or more (84x84 Atari frames)."""
SMALL_IMAGE_FILTERS = ((16, 3, 1), (32, 3, 2))
"""The default for smaller images (a 16x16 grid): stride 1 first keeps single-pixel
objects apart; followed by 256 units."""

_NATURE_MIN_SIDE = 64
CONV_DEFAULTS: dict[str, Any] = {"conv_filters": None, "conv_activation": "relu"}
"""The conv keys of ``model_config`` (None: filters from the observation space), for a
module of its own to add to its defaults."""


def is_image_space(space: Any) -> bool:
    """A 3-D Box of uint8, read as an HWC image: its default module gets a conv encoder."""
    shape = getattr(space, "shape", None)
    return shape is not None and len(shape) == 3 and np.dtype(space.dtype) == np.uint8


def _image_defaults(space: Any) -> dict[str, Any]:
    if min(space.shape[:2]) >= _NATURE_MIN_SIDE:
        return {"conv_filters": NATURE_CNN_FILTERS, "hiddens": (512,), "activation": "relu"}
    return {"conv_filters": SMALL_IMAGE_FILTERS, "hiddens": (256,), "activation": "relu"}


def module_config_for(
    model_config: Mapping[str, Any],
    observation_space: Any,
    defaults: Mapping[str, Any] = MODEL_CONFIG_DEFAULTS,
    *,
    module: str = "the default module",
) -> dict[str, Any]:
    """A module's resolved ``model_config`` for ``observation_space``: an image's defaults
    (its filters, then ``hiddens`` of 512 or 256 units with ReLU) over ``defaults`` (the
    default module's, or a module's own with ``conv_filters`` and ``conv_activation``, as
    DQN's Q-network passes), under what the config gives; ``conv_filters`` a tuple of
    ``(channels, kernel, stride)`` (empty: no encoder). A ConfigError names a bad key."""
    defaults = dict(defaults)
    if is_image_space(observation_space):
        defaults.update(_image_defaults(observation_space))
    config = resolve_model_config(model_config, defaults, module=module)
    filters = config["conv_filters"]
    config["conv_filters"] = () if filters is None else _checked_filters(filters)
    if config["conv_filters"] and len(getattr(observation_space, "shape", ())) != 3:
        raise ConfigError(
            f"model_config['conv_filters'] needs image observations (a 3-D Box, HWC), got "
            f"shape {getattr(observation_space, 'shape', None)}: drop conv_filters, or wrap "
            "the env to return HWC images"
        )
    return config


def _checked_filters(filters: Any) -> tuple[tuple[int, int, int], ...]:
    try:
        checked = tuple(tuple(int(v) for v in layer) for layer in filters)
    except (TypeError, ValueError):
        checked = ()
        ok = False
    else:
        ok = all(len(layer) == 3 and min(layer) >= 1 for layer in checked)
    if not ok:
        raise ConfigError(
            "model_config['conv_filters'] must be a list of [channels, kernel, stride] "
            f"(each an integer >= 1), e.g. [[16, 3, 1], [32, 3, 2]], got {filters!r}"
        )
    return checked


@attrs.frozen
class ConvStack:
    """Convolutions without padding over an HWC image, each followed by ``activation``;
    ``scale`` multiplies the input first (1/255 for uint8 pixels)."""

    input_shape: tuple[int, int, int]
    filters: tuple[tuple[int, int, int], ...]
    activation: str
    scale: float

    @property
    def layers(self) -> list[tuple[int, int, int, int]]:
        """``(in_channels, out_channels, kernel, stride)`` of each convolution."""
        channels = [self.input_shape[2], *(f[0] for f in self.filters)]
        return [(channels[i], c, k, s) for i, (c, k, s) in enumerate(self.filters)]

    @property
    def output_shape(self) -> tuple[int, int, int]:
        h, w, c = self.input_shape
        for channels, kernel, stride in self.filters:
            h, w, c = (h - kernel) // stride + 1, (w - kernel) // stride + 1, channels
        return h, w, c

    @property
    def output_size(self) -> int:
        return int(np.prod(self.output_shape))

    def layout(self, tower: str, framework: str) -> dict[str, tuple[int, ...]]:
        """Weight names and shapes of this stack as ``tower`` in ``framework``."""
        out = {}
        for i, (c_in, c_out, k, _) in enumerate(self.layers):
            if framework == "torch":
                out[f"{tower}.{2 * i}.weight"] = (c_out, c_in, k, k)
            else:
                out[f"{tower}.{2 * i}.kernel"] = (k, k, c_in, c_out)
            out[f"{tower}.{2 * i}.bias"] = (c_out,)
        return out


def conv_stack(observation_space: Any, config: Mapping[str, Any]) -> ConvStack | None:
    """The conv encoder of a module with ``config`` (``module_config_for``'s) over
    ``observation_space``; None without one. A ConfigError when the image is too small for
    the filters, naming the layer."""
    filters: Sequence[tuple[int, int, int]] = config["conv_filters"]
    if not filters:
        return None
    h, w, _ = (int(v) for v in observation_space.shape)
    for i, (_, kernel, stride) in enumerate(filters):
        if h < kernel or w < kernel:
            raise ConfigError(
                f"model_config['conv_filters'] layer {i} has a {kernel}x{kernel} kernel, and "
                f"its input is {h}x{w} (observations {tuple(observation_space.shape)}): use "
                "smaller kernels or strides, or fewer layers"
            )
        h, w = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    uint8 = np.dtype(observation_space.dtype) == np.uint8
    return ConvStack(
        input_shape=tuple(int(v) for v in observation_space.shape),
        filters=tuple(filters),
        activation=config["conv_activation"],
        scale=1 / 255 if uint8 else 1.0,
    )
