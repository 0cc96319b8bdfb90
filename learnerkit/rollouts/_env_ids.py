"""Making gymnasium envs from ids: ids whose registration needs an import (``ALE/...``:
ale-py registers them, as gymnasium 1.x no longer does; ``learnerkit/...``:
``learnerkit.envs``), and Atari's preprocessing (``atari``). Env runners, evaluation and
collection all make their envs here, so that ``--env ALE/Pong-v5`` works by id and every
one of them sees the frames training saw."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium

from learnerkit.errors import ConfigError
from learnerkit.rollouts._atari import AtariSettings, atari_wrappers, is_atari

__all__ = ["make_env", "register_env_id", "vector_env_options"]


def register_env_id(env_id: Any) -> None:
    """Import what registers ``env_id`` (a str; an ``EnvSpec`` needs nothing) with
    gymnasium, if it needs an import; a ConfigError naming the package to install when it
    is missing."""
    if not isinstance(env_id, str):
        return
    if env_id.startswith("learnerkit/"):
        import learnerkit.envs  # noqa: F401  (registers on import)
    elif is_atari(env_id) and env_id not in gymnasium.registry:
        try:
            import ale_py
        except ImportError as exc:
            raise ConfigError(
                f"environment {env_id!r} is an Atari game, which needs ale-py: install it "
                "with `pip install 'learnerkit[atari]'` (ale-py ships the ROMs)"
            ) from exc
        gymnasium.register_envs(ale_py)


def vector_env_options(atari: AtariSettings | None) -> dict[str, Any]:
    """What ``gymnasium.make_vec`` takes to make each env preprocessed (nothing without
    preprocessing): the game's own frame skip off, and the wrappers."""
    if atari is None:
        return {}
    return {"frameskip": 1, "wrappers": atari_wrappers(atari)}


def make_env(
    env_id: str, atari: AtariSettings | None = None, env_kwargs: Mapping[str, Any] | None = None
) -> gymnasium.Env:
    """One env of ``env_id``, preprocessed as ``atari`` says (rewards are not clipped: what
    evaluation and collection report is the game's return)."""
    register_env_id(env_id)
    if atari is None:
        return gymnasium.make(env_id, **dict(env_kwargs or {}))
    env = gymnasium.make(env_id, frameskip=1, **dict(env_kwargs or {}))
    for wrap in atari_wrappers(atari):
        env = wrap(env)
    return env
