"""The standard Atari preprocessing (Mnih et al. 2015; Machado et al. 2018), applied by
default to ``ALE/`` ids: no-op starts, frame skip 4 with max-pooling over the last two
frames, 84x84 grey frames, a stack of the last 4 as an ``84x84x4`` uint8 HWC image (what the
default modules' Nature CNN takes), reward clipping for training (the episode returns
reported stay the game's), and optionally a life lost as the end of an episode.

ALE v5 ids skip 4 frames and repeat the last action with probability 0.25 (sticky actions)
themselves; the env is made with ``frameskip=1`` so that gymnasium's ``AtariPreprocessing``
does the skipping (with max-pooling) and the game's sticky actions are kept.
``AtariSettings`` is recorded with the run (``config.json``, ``run.json``), and evaluation
and collection rebuild the same env from it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import gymnasium
import numpy as np

from learnerkit.errors import ConfigError

__all__ = ["AtariSettings", "atari_settings", "atari_wrappers", "is_atari"]


def is_atari(env_id: Any) -> bool:
    """An Arcade Learning Environment id (``ALE/Pong-v5``)."""
    return isinstance(env_id, str) and env_id.startswith("ALE/")


def _at_least(minimum: int) -> Callable[[Any, attrs.Attribute, int], None]:
    def check(_: Any, attribute: attrs.Attribute, value: int) -> None:
        if not isinstance(value, int) or value < minimum:
            raise ConfigError(
                f"atari preprocessing: {attribute.name} must be an integer >= {minimum}, "
                f"got {value!r}"
            )

    return check


@attrs.frozen(kw_only=True)
class AtariSettings:
    """How an Atari game's frames and rewards reach the learner."""

    noop_max: int = attrs.field(default=30, validator=_at_least(0))
    """Up to this many no-op actions after each reset (random starts)."""
    frame_skip: int = attrs.field(default=4, validator=_at_least(1))
    """Frames each action repeats for; the observation is the max of the last two."""
    screen_size: int = attrs.field(default=84, validator=_at_least(1))
    """Frames resized to this many pixels a side."""
    grayscale: bool = True
    """Grey frames (one channel each); else RGB (three)."""
    frame_stack: int = attrs.field(default=4, validator=_at_least(1))
    """The last this many frames, stacked on the channel axis."""
    clip_rewards: bool = True
    """Train on the sign of each reward; the returns reported are the game's own."""
    terminal_on_life_loss: bool = False
    """End an episode when a life is lost (then the returns reported are per life)."""


def atari_settings(env_id: str, given: bool | Mapping[str, Any] | None) -> AtariSettings | None:
    """The preprocessing of a run in ``env_id``: ``AtariSettings`` for an ``ALE/`` id unless
    ``given`` is False (a mapping: settings to change from the defaults); None for other
    ids, for which a mapping is a ConfigError."""
    if given is False:
        return None
    if not is_atari(env_id):
        if given is True or given is None:
            return None
        raise ConfigError(
            f"atari preprocessing settings were given, but {env_id!r} is not an Atari game "
            "(an ALE/... id): drop them"
        )
    if given is True or given is None:
        return AtariSettings()
    unknown = sorted(set(given) - set(attrs.fields_dict(AtariSettings)))
    if unknown:
        raise ConfigError(
            f"unknown atari preprocessing setting(s) {unknown}; known: "
            f"{sorted(attrs.fields_dict(AtariSettings))}"
        )
    return AtariSettings(**given)


def atari_wrappers(settings: AtariSettings) -> list[Callable[[gymnasium.Env], gymnasium.Env]]:
    """The wrappers that turn an Atari env made with ``frameskip=1`` into the preprocessed
    one (rewards are clipped by the env runner, which reports the game's returns)."""
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    def preprocess(env: gymnasium.Env) -> gymnasium.Env:
        return AtariPreprocessing(
            env,
            noop_max=settings.noop_max,
            frame_skip=settings.frame_skip,
            screen_size=settings.screen_size,
            terminal_on_life_loss=settings.terminal_on_life_loss,
            grayscale_obs=settings.grayscale,
            grayscale_newaxis=True,
        )

    def stack(env: gymnasium.Env) -> gymnasium.Env:
        return _ChannelsLast(FrameStackObservation(env, settings.frame_stack))

    return [preprocess, stack]


class _ChannelsLast(gymnasium.ObservationWrapper):
    """``[stack, H, W, C]`` frames as one ``[H, W, stack * C]`` HWC image."""

    def __init__(self, env: gymnasium.Env) -> None:
        super().__init__(env)
        stack, h, w, c = env.observation_space.shape
        self.observation_space = gymnasium.spaces.Box(0, 255, (h, w, stack * c), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        stack, h, w, c = observation.shape
        return np.ascontiguousarray(np.moveaxis(observation, 0, 2)).reshape(h, w, stack * c)
