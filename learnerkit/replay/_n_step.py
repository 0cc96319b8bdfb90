"""n-step returns over time-major steps: the maths of a replay buffer, apart from storage.

Which step ends a window decides the target, so the rule is spelled out once, here: a
window stops at its episode's end; after a termination nothing is bootstrapped (discount
0), after a truncation the episode's final observation is (discount ``gamma ** k``).
"""

from __future__ import annotations

import attrs
import numpy as np

from learnerkit.errors import ConfigError

__all__ = ["NStepWindows", "check_n_step", "n_step_windows"]


@attrs.frozen(eq=False)
class NStepWindows:
    """What the window starting at each step ``[t, n]`` holds; every array is ``[L, N]``."""

    returns: np.ndarray
    """``sum_k gamma ** k * r[t + k]`` over the ``steps`` rewards summed (float64)."""
    steps: np.ndarray
    """The rewards summed, 1 to n: fewer than n where the episode ended, or the data did."""
    ended: np.ndarray
    """The window stops at the end of its episode (step ``t + steps - 1`` is the last)."""
    terminated: np.ndarray
    """... and that end is a termination: the window's discount is 0."""

    def discounts(self, gamma: float) -> np.ndarray:
        """``gamma ** steps``, 0 where the episode terminated within the window."""
        return np.where(self.terminated, 0.0, float(gamma) ** self.steps)

    def complete(self, n: int) -> np.ndarray:
        """Whether the window's rewards are all known: it ended, or it summed n of them. A
        window that is neither was cut by the end of the data."""
        return self.ended | (self.steps == n)


def check_n_step(n_step: int, gamma: float) -> None:
    if isinstance(n_step, bool) or not isinstance(n_step, (int, np.integer)) or n_step < 1:
        raise ConfigError(
            f"n_step is {n_step!r}; it is the number of rewards summed into a return, an "
            "integer of at least 1 (1 is the one-step TD target)"
        )
    if not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"gamma is {gamma!r}; a discount factor lies in [0, 1]")


def n_step_windows(
    rewards: np.ndarray,
    terminateds: np.ndarray,
    truncateds: np.ndarray,
    *,
    n: int,
    gamma: float,
) -> NStepWindows:
    """The n-step window of every step of ``N`` time-major streams (``[L, N]`` arrays).

    Vectorised over steps and streams; the one loop runs over the n offsets. A stream's
    step ``t`` ends an episode when ``terminateds[t] | truncateds[t]``; a step that is both
    counts as terminated (gymnasium allows both).
    """
    check_n_step(n, gamma)
    rewards = np.asarray(rewards, dtype=np.float64)
    terminateds = np.asarray(terminateds, dtype=bool)
    ends = terminateds | np.asarray(truncateds, dtype=bool)
    if rewards.ndim != 2 or rewards.shape != ends.shape:
        raise ConfigError(
            f"n_step_windows takes time-major [L, N] rewards, terminateds and truncateds; "
            f"got shapes {rewards.shape}, {terminateds.shape}, {np.shape(truncateds)}"
        )
    length = rewards.shape[0]
    returns = np.zeros(rewards.shape)
    steps = np.zeros(rewards.shape, dtype=np.int64)
    ended = np.zeros(rewards.shape, dtype=bool)
    terminated = np.zeros(rewards.shape, dtype=bool)
    open_ = np.ones(rewards.shape, dtype=bool)
    for k in range(min(n, length)):
        # Windows starting at t < length - k still have a step t + k.
        live = open_[: length - k]
        returns[: length - k] += np.where(live, gamma**k * rewards[k:], 0.0)
        steps[: length - k] += live
        stop = live & ends[k:]
        ended[: length - k] |= stop
        terminated[: length - k] |= stop & terminateds[k:]
        live &= ~stop  # a view: closes those windows in open_
    return NStepWindows(returns=returns, steps=steps, ended=ended, terminated=terminated)
