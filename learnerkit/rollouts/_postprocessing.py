"""Maths on sampled trajectories, in numpy: GAE, running observation statistics, explained
variance.

Pure functions on time-major `[T, N]` arrays (T steps of N parallel environments), so the
same code serves every backend; the learner only sees the columns they produce.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from learnerkit.errors import BatchError, ConfigError

__all__ = ["RunningMeanStd", "compute_gae", "explained_variance"]


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminateds: np.ndarray,
    truncateds: np.ndarray,
    *,
    gamma: float,
    lambda_: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimates and value targets (Schulman et al. 2016, eq. 16).

    Every input is time-major `[T, N]`. `values[t]` is V(s_t); `next_values[t]` is V of the
    observation that step t reached: for a step that ended an episode, the episode's *final*
    observation, not the observation the environment was reset to.

        delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t
        A_t     = delta_t + gamma * lambda_ * (1 - (terminated_t or truncated_t)) * A_{t+1}

    A terminated episode has no future, so it does not bootstrap; a truncated one (a time
    limit) bootstraps from the value of its final observation, because the state itself had
    a future (Pardo et al. 2018, "Time Limits in Reinforcement Learning"). Either way the
    advantage recursion stops at the episode's end. The last step of the fragment
    bootstraps from `next_values[-1]` with A_T = 0.

    Returns `(advantages, value_targets)`, both float32 `[T, N]`, with
    `value_targets = advantages + values`.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"compute_gae: gamma must be in [0, 1], got {gamma}")
    if not 0.0 <= lambda_ <= 1.0:
        raise ConfigError(f"compute_gae: lambda_ must be in [0, 1], got {lambda_}")
    arrays = {
        "rewards": np.asarray(rewards),
        "values": np.asarray(values),
        "next_values": np.asarray(next_values),
        "terminateds": np.asarray(terminateds),
        "truncateds": np.asarray(truncateds),
    }
    shape = arrays["rewards"].shape
    for name, array in arrays.items():
        if array.ndim != 2:
            raise BatchError(
                f"compute_gae: {name} has shape {array.shape}; every input must be time-major "
                "[T, N] (for a single environment, add an axis: x[:, None])"
            )
        if array.shape != shape:
            detail = ", ".join(f"{k}: {v.shape}" for k, v in arrays.items())
            raise BatchError(f"compute_gae: inputs must all have the same [T, N] shape ({detail})")

    # float64 inside: over T=2048 steps the float32 recursion loses digits that cost nothing
    # to keep.
    rewards_, values_, next_values_ = (
        arrays[k].astype(np.float64, copy=False) for k in ("rewards", "values", "next_values")
    )
    terminated = arrays["terminateds"].astype(bool, copy=False)
    done = terminated | arrays["truncateds"].astype(bool, copy=False)
    deltas = rewards_ + gamma * np.where(terminated, 0.0, next_values_) - values_
    decay = np.where(done, 0.0, gamma * lambda_)

    advantages = np.empty(shape, dtype=np.float64)
    last = np.zeros(shape[1], dtype=np.float64)
    for t in range(shape[0] - 1, -1, -1):
        last = deltas[t] + decay[t] * last
        advantages[t] = last
    value_targets = advantages + values_
    return advantages.astype(np.float32), value_targets.astype(np.float32)


class RunningMeanStd:
    """Mean and variance of a stream of batches, merged with Chan et al.'s parallel update
    (the same arithmetic as Stable-Baselines3's `RunningMeanStd`).

    Starts at mean 0, variance 1, with a tiny pseudo-count `epsilon` so the first
    normalisation never divides by zero.
    """

    def __init__(self, shape: tuple[int, ...] = (), *, epsilon: float = 1e-4) -> None:
        self.shape = tuple(shape)
        self.mean = np.zeros(self.shape, dtype=np.float64)
        self.var = np.ones(self.shape, dtype=np.float64)
        self.count = float(epsilon)

    def update(self, x: np.ndarray) -> None:
        """Fold in a batch `x` of shape `[B, *shape]`."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1:] != self.shape:
            raise BatchError(
                f"RunningMeanStd.update: expected a batch of shape [B, *{self.shape}], "
                f"got {x.shape}"
            )
        batch_count = x.shape[0]
        if batch_count == 0:
            return
        # ufunc reductions, not x.mean()/x.var(): this runs every environment step, and the
        # method wrappers cost more than the arithmetic on a few observations.
        batch_mean = np.add.reduce(x, axis=0) / batch_count
        centred = x - batch_mean
        batch_var = np.add.reduce(centred * centred, axis=0) / batch_count
        self._combine(batch_mean, batch_var, batch_count)

    def merge(self, state: dict[str, Any]) -> None:
        """Fold in the statistics of another stream (``get_state()`` of a normaliser that
        saw other observations, e.g. an env runner's increment since the last merge)."""
        count = float(np.asarray(state["count"]))
        if count > 0:
            self._combine(
                np.asarray(state["mean"], dtype=np.float64),
                np.asarray(state["var"], dtype=np.float64),
                count,
            )

    def _combine(self, batch_mean: np.ndarray, batch_var: np.ndarray, batch_count: float) -> None:
        delta = batch_mean - self.mean
        total = self.count + batch_count
        m2 = (
            self.var * self.count
            + batch_var * batch_count
            + delta * delta * (self.count * batch_count / total)
        )
        self.mean = self.mean + delta * (batch_count / total)
        self.var = m2 / total
        self.count = total

    def normalize(self, x: np.ndarray, clip: float | None = 10.0) -> np.ndarray:
        """`(x - mean) / sqrt(var + 1e-8)`, clipped to `[-clip, clip]` (no clip if None),
        as float32. Clipping keeps a rare outlier from saturating the network's inputs."""
        out = (np.asarray(x) - self.mean) / np.sqrt(self.var + 1e-8)
        if clip is not None:
            np.minimum(out, clip, out=out)  # cheaper than np.clip on small arrays
            np.maximum(out, -clip, out=out)
        return out.astype(np.float32, copy=False)

    def get_state(self) -> dict[str, np.ndarray]:
        """The statistics as arrays, for a checkpoint."""
        return {
            "mean": self.mean.copy(),
            "var": self.var.copy(),
            "count": np.asarray(self.count, dtype=np.float64),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore statistics saved by `get_state`."""
        missing = {"mean", "var", "count"} - set(state)
        if missing:
            raise ConfigError(f"RunningMeanStd.set_state: state lacks {sorted(missing)}")
        mean = np.asarray(state["mean"], dtype=np.float64)
        var = np.asarray(state["var"], dtype=np.float64)
        if mean.shape != self.shape or var.shape != self.shape:
            raise ConfigError(
                f"RunningMeanStd.set_state: statistics have shapes mean {mean.shape}, "
                f"var {var.shape}; this normaliser tracks shape {self.shape}"
            )
        self.mean, self.var = mean.copy(), var.copy()
        self.count = float(np.asarray(state["count"]))


def explained_variance(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    """`1 - Var(y_true - y_pred) / Var(y_true)`: 1 is a perfect value function, 0 one no
    better than a constant, negative one worse than a constant.

    When `Var(y_true) == 0` (or the arrays are empty) this returns 0.0 rather than NaN or
    infinity: no prediction can explain variance that is not there, and a NaN would poison
    the averages and plots the metric feeds.
    """
    y_pred = np.asarray(y_pred, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.float64)
    if y_pred.shape != y_true.shape:
        raise BatchError(
            f"explained_variance: y_pred has shape {y_pred.shape} but y_true has {y_true.shape}"
        )
    if y_true.size == 0:
        return 0.0
    var_y = float(np.var(y_true))
    if var_y == 0.0:
        return 0.0
    return float(1.0 - np.var(y_true - y_pred) / var_y)
