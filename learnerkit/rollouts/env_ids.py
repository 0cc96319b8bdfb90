"""Env ids whose registration needs an import: ``ALE/...`` (ale-py registers them) and
``learnerkit/...`` (``learnerkit.envs``). Everywhere an env is made from an id (env
runners, evaluation, collection) calls ``register_env_id`` first, so that
``--env ALE/Pong-v5`` works by id, as gymnasium 1.x no longer imports ale-py itself."""

from __future__ import annotations

import gymnasium

from learnerkit.errors import ConfigError

__all__ = ["is_atari", "register_env_id"]


def is_atari(env_id: str) -> bool:
    """An Arcade Learning Environment id (``ALE/Pong-v5``)."""
    return env_id.startswith("ALE/")


def register_env_id(env_id: str) -> None:
    """Import what registers ``env_id`` with gymnasium, if it needs an import; a ConfigError
    naming the package to install when it is missing."""
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
