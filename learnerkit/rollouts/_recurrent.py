"""A recurrent module's state, carried by an env runner from step to step (`StateCarrier`).

One state row per env, kept across fragments (an episode goes on where the last fragment
stopped), reset to the module's initial state where an episode ends. Every step records
what the learner needs to run the module again over the same steps: the state each step
started from (``state_in``) and the previous action and reward (``prev_actions``,
``prev_rewards``, zero at an episode's first step). A forward pass over a sequence reads
``state_in`` at the sequence's first row and carries the state itself from there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from learnerkit._batch import Columns
from learnerkit._columns import RECURRENT_INPUTS
from learnerkit._import_path import resolve
from learnerkit._specs import ModuleSpec
from learnerkit.errors import ConfigError
from learnerkit.rollouts.acting import numpy_copy_class

__all__ = ["AgentState", "AgentStatePolicy", "StateCarrier", "check_can_act", "is_recurrent_copy"]


def is_recurrent_copy(copy: Any) -> bool:
    """Whether a numpy copy (or a module) acts with a state: it declares ``initial_state``."""
    return callable(getattr(copy, "initial_state", None))


def check_can_act(module_spec: ModuleSpec) -> None:
    """A ConfigError for a recurrent module class without a numpy copy: env runners carry a
    recurrent module's state through its numpy copy only."""
    if module_spec.module_class is None or numpy_copy_class(module_spec) is not None:
        return
    module_class = resolve(module_spec.module_class, "ModuleSpec.module_class")
    if is_recurrent_copy(module_class):
        raise ConfigError(
            f"{module_class.__qualname__} is recurrent (it declares initial_state), but has "
            "no numpy copy: env runners act with a recurrent module through its numpy copy; "
            "declare one (a class attribute numpy_copy, or ModuleSpec(numpy_copy=...); see "
            "docs/guides/recurrent.md)"
        )


class StateCarrier:
    """The state of ``num_envs`` envs for the module copy ``acting()`` returns (called each
    step: the runner's copy changes when new weights arrive; the state stays).

    `policy` is what the env adapter calls each step; `after_step` follows every env step;
    `bootstrap_values` gives the values a fragment bootstraps from (see there)."""

    columns = RECURRENT_INPUTS
    """The per-row columns recorded besides the policy's outputs."""

    def __init__(self, acting: Callable[[], Any], num_envs: int, action_space: Any) -> None:
        self._acting = acting
        self.num_envs = num_envs
        copy = acting()
        if not is_recurrent_copy(copy):
            raise ConfigError(
                f"{type(copy).__qualname__} has no initial_state(n): a recurrent module's "
                "numpy copy declares its initial state (see docs/guides/recurrent.md)"
            )
        self.initial = np.asarray(copy.initial_state(1), dtype=np.float32)[0]
        self.state = np.tile(self.initial, (num_envs, 1))
        discrete = hasattr(action_space, "n")
        shape = () if discrete else tuple(action_space.shape)
        self.prev_actions = np.zeros((num_envs, *shape), np.int64 if discrete else np.float32)
        self.prev_rewards = np.zeros(num_envs, dtype=np.float32)
        self._next_state: np.ndarray | None = None
        # (state out, action, reward) of each episode truncated since the fragment began:
        # its final observation is bootstrapped from where it ended.
        self._truncated: list[tuple[np.ndarray, Any, float]] = []

    def start_fragment(self) -> None:
        """Forget truncated episodes a fragment that was not bootstrapped left behind."""
        self._truncated = []

    def inputs(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        return {
            Columns.OBS: obs,
            Columns.STATE_IN: self.state,
            Columns.PREV_ACTIONS: self.prev_actions,
            Columns.PREV_REWARDS: self.prev_rewards,
        }

    def policy(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """One acting step for all envs: the copy's outputs and the recorded inputs."""
        inputs = self.inputs(obs)
        out = dict(self._acting().forward_exploration(inputs))
        self._next_state = np.asarray(out.pop(Columns.STATE_OUT), dtype=np.float32)
        out.update({name: inputs[name] for name in self.columns})
        return out

    def after_step(
        self, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray, done: np.ndarray
    ) -> None:
        """Carry the state on; where an episode ended, start the next from the initial
        state, remembering a truncated one's end for `bootstrap_values`."""
        state = self._next_state
        for i in np.flatnonzero(done & ~terminated):
            self._truncated.append((state[i].copy(), actions[i], float(rewards[i])))
        # New arrays, not writes into the old: the rollout's buffers hold copies already,
        # but a caller may keep `inputs()` of the last step.
        self.state = np.where(done[:, None], self.initial, state).astype(np.float32)
        keep = ~done
        self.prev_actions = np.where(
            keep.reshape(-1, *([1] * (np.ndim(actions) - 1))), actions, 0
        ).astype(self.prev_actions.dtype)
        self.prev_rewards = np.where(keep, rewards, 0.0).astype(np.float32)

    def bootstrap_values(self, obs: np.ndarray) -> np.ndarray:
        """Values of ``obs``: the final observations of the episodes truncated since the
        last call, in the order they ended (each from the state its episode ended in), then
        one observation per env (from the state carried now). What the gymnasium adapter's
        one ``value_fn`` call per fragment asks for."""
        k = len(self._truncated)
        if len(obs) != k + self.num_envs:
            raise ValueError(
                f"bootstrap_values got {len(obs)} observations for {k} truncated episodes "
                f"and {self.num_envs} envs"
            )
        states, actions, rewards = [self.state], [self.prev_actions], [self.prev_rewards]
        if k:
            ended = list(zip(*self._truncated, strict=True))
            states.insert(0, np.stack(ended[0]))
            actions.insert(0, np.asarray(ended[1], dtype=self.prev_actions.dtype))
            rewards.insert(0, np.asarray(ended[2], dtype=np.float32))
        self._truncated = []
        inputs = {
            Columns.OBS: obs,
            Columns.STATE_IN: np.concatenate(states),
            Columns.PREV_ACTIONS: np.concatenate(actions),
            Columns.PREV_REWARDS: np.concatenate(rewards),
        }
        return np.asarray(self._acting().value(inputs), dtype=np.float32)

    def get_state(self) -> dict[str, np.ndarray]:
        """The carried state, for an exact resume."""
        return {
            "state": self.state.copy(),
            "prev_actions": self.prev_actions.copy(),
            "prev_rewards": self.prev_rewards.copy(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        saved = np.asarray(state["state"], dtype=np.float32)
        if saved.shape != self.state.shape:
            raise ValueError(
                f"the saved recurrent state has shape {saved.shape}, this runner's "
                f"{self.state.shape}"
            )
        self.state = saved.copy()
        self.prev_actions = np.asarray(state["prev_actions"], self.prev_actions.dtype).copy()
        self.prev_rewards = np.asarray(state["prev_rewards"], np.float32).copy()

    def reset(self) -> None:
        """Every env at an episode's start (its envs were reset)."""
        self.state = np.tile(self.initial, (self.num_envs, 1))
        self.prev_actions = np.zeros_like(self.prev_actions)
        self.prev_rewards = np.zeros_like(self.prev_rewards)
        self._truncated = []


class AgentState(NamedTuple):
    """What one PettingZoo agent carries between its steps: the state its last step ended
    in, and its action and reward there."""

    state: np.ndarray
    prev_action: Any
    prev_reward: float


class AgentStatePolicy:
    """A recurrent module's acting step for PettingZoo agents, whose set changes from step
    to step (``_pettingzoo_sampling``): the adapter keeps each agent's `AgentState` in its
    episode (an agent starts from `initial` when its episode starts: it joins, or the env is
    reset), hands them over with the observations, and keeps the ``state_out`` it gets."""

    def __init__(self, acting: Callable[[], Any], action_space: Any) -> None:
        carrier = StateCarrier(acting, 1, action_space)  # checks the copy; its zeros
        self._acting = acting
        self.initial = AgentState(carrier.initial, carrier.prev_actions[0], 0.0)

    def __call__(self, obs: np.ndarray, carried: Sequence[AgentState]) -> dict[str, Any]:
        """The copy's outputs for one row per agent, ``state_out`` among them, and the
        recurrent inputs each row acted with (recorded as ``StateCarrier.columns``)."""
        inputs = self._inputs(obs, carried)
        out = dict(self._acting().forward_exploration(inputs))
        out[Columns.STATE_OUT] = np.asarray(out[Columns.STATE_OUT], dtype=np.float32)
        out.update({name: inputs[name] for name in RECURRENT_INPUTS})
        return out

    def value(self, obs: np.ndarray, carried: Sequence[AgentState]) -> np.ndarray:
        """V of each agent's ``obs`` stepped from what it carries (a segment's bootstrap:
        the state, action and reward its last step ended with)."""
        return np.asarray(self._acting().value(self._inputs(obs, carried)), dtype=np.float32)

    def _inputs(self, obs: np.ndarray, carried: Sequence[AgentState]) -> dict[str, np.ndarray]:
        return {
            Columns.OBS: obs,
            Columns.STATE_IN: np.stack([c.state for c in carried]).astype(np.float32),
            Columns.PREV_ACTIONS: np.stack([np.asarray(c.prev_action) for c in carried]).astype(
                self.initial.prev_action.dtype
            ),
            Columns.PREV_REWARDS: np.array([c.prev_reward for c in carried], np.float32),
        }
