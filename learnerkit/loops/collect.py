"""Recording a trained policy as a Minari dataset (``learnerkit collect``).

Any algorithm's checkpoint works: the policy is restored as ``learnerkit evaluate``
restores it (``evaluation.load_policy``). When the run normalised observations the policy
is fed normalised ones, with the statistics saved in the checkpoint, while the dataset
records the environment's own: a dataset is about the environment, not about one run's
normaliser. Box actions are recorded clipped to the action space, as the environment
received them.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from learnerkit.errors import ConfigError
from learnerkit.loops.evaluation import load_policy
from learnerkit.rollouts import datasets


@attrs.frozen(kw_only=True)
class CollectSummary:
    dataset_id: str
    path: str
    """The dataset's directory in the local Minari store."""
    env: str
    episodes: int
    steps: int
    episode_return_mean: float


def collect_dataset(
    path: str,
    *,
    num_episodes: int,
    dataset_id: str,
    env_id: str | None = None,
    greedy: bool = False,
    seed: int = 0,
    author: str | None = None,
    author_email: str | None = None,
    code_permalink: str | None = None,
    description: str | None = None,
) -> CollectSummary:
    """Run ``num_episodes`` episodes of the policy saved at ``path`` (a run or checkpoint
    directory) in ``env_id`` (default: the run's) and save them as the Minari dataset
    ``dataset_id`` in the local Minari store (``MINARI_DATASETS_PATH``, else
    ``~/.minari/datasets``).

    Actions are sampled from the policy's distribution, or its most likely ones with
    ``greedy``. Minari's metadata records ``algorithm_name`` (``learnerkit-ALGO``), the
    ``author``, ``author_email`` and ``code_permalink`` given (Minari warns about each one
    left out: they are what lets others trust and reproduce a shared dataset), and a
    description (default: what was recorded, from which checkpoint, how).
    """
    trained = load_policy(path, env_id=env_id, explore=not greedy)
    if hasattr(trained.policy, "reset"):
        raise ConfigError(
            f"the policy at {path} is recurrent (use_lstm): recording does not reset its state "
            "between episodes yet; collect from a feed-forward run"
        )
    run = trained.run
    low = getattr(trained.action_space, "low", None)
    high = getattr(trained.action_space, "high", None)

    def act(obs: np.ndarray) -> Any:
        action = trained.act(np.asarray(obs)[None])[0]
        if low is not None:
            return np.clip(action, low, high).astype(trained.action_space.dtype)
        return int(action)

    how = "greedy (most likely) actions" if greedy else "actions sampled from the policy"
    dataset = datasets.record_dataset(
        trained.env_id,
        act,
        num_episodes=num_episodes,
        dataset_id=dataset_id,
        seed=seed,
        atari=trained.atari,
        algorithm_name=f"learnerkit-{run['algorithm']}",
        author=author,
        author_email=author_email,
        code_permalink=code_permalink,
        description=description
        or (
            f"{num_episodes} episodes of {run['algorithm']} ({run['framework']}, trained by "
            f"learnerkit) in {trained.env_id}, {how}, from checkpoint {path}"
        ),
    )
    returns = datasets.episode_returns(dataset)
    return CollectSummary(
        dataset_id=dataset_id,
        path=str(datasets.local_store() / dataset_id),
        env=trained.env_id,
        episodes=int(dataset.total_episodes),
        steps=int(dataset.total_steps),
        episode_return_mean=float(np.mean(returns)),
    )
