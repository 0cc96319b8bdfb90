"""Evaluating a trained policy: greedy episodes from a checkpoint written by training.

``load_policy`` rebuilds a run's policy from its checkpoint (weights, and the observation
normaliser when it trained with one); ``learnerkit evaluate`` and ``learnerkit collect``
both start from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np

from learnerkit._batch import Columns
from learnerkit._columns import DEFAULT_MODULE_ID
from learnerkit._learner import Learner
from learnerkit._learner_spec import LearnerSpec
from learnerkit._plugins import get_algorithm
from learnerkit._specs import ModuleSpec, structure_hyperparameters
from learnerkit.backends import policy_fn
from learnerkit.errors import CheckpointError, ConfigError
from learnerkit.fields import _is_integer
from learnerkit.loops._run_files import checkpoint_dir, read_run, read_trainer_state
from learnerkit.loops._setup import saved_atari_preprocessing
from learnerkit.rollouts._atari import AtariSettings, atari_settings, is_atari
from learnerkit.rollouts._env_ids import make_env
from learnerkit.rollouts._gymnasium_sampling import EnvRunner
from learnerkit.rollouts._pettingzoo_envs import is_pettingzoo, make_parallel_env, policy_mapping_fn
from learnerkit.rollouts._recurrent import StateCarrier, is_recurrent_copy
from learnerkit.rollouts._sampling import ObsNormalizers
from learnerkit.rollouts.acting import numpy_copy_class

Policy = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@attrs.frozen(kw_only=True, eq=False)
class TrainedPolicy:
    """A policy restored from a training checkpoint."""

    run: Mapping[str, Any]
    """What the run was trained with (its ``run.json``)."""
    env_id: str
    observation_space: Any
    action_space: Any
    policy: Policy
    """Numpy observations as the policy sees them in, ``{"actions": ...}`` out."""
    normalize: Callable[[np.ndarray], np.ndarray]
    """Raw observations (the environment's) to what the policy sees: the normaliser saved
    with the checkpoint, or a cast to float32 (uint8 frames kept) when the run did not
    normalise."""
    atari: AtariSettings | None = None
    """The Atari preprocessing the run trained with, for an ``ALE/`` env (``make_env``
    makes the env so)."""

    def act(self, raw_obs: np.ndarray) -> np.ndarray:
        """Actions for a batch of the environment's own observations."""
        return self.policy(self.normalize(np.asarray(raw_obs)))["actions"]


def load_policy(path: str, *, env_id: str | None = None, explore: bool = False) -> TrainedPolicy:
    """The policy saved at ``path`` (a run or checkpoint directory), for ``env_id`` (default:
    the env it was trained or evaluated on); greedy unless ``explore``."""
    checkpoint = checkpoint_dir(path)
    run = read_run(path)
    algorithm = get_algorithm(run["algorithm"])
    hps = structure_hyperparameters(algorithm.hyperparameters, run["hyperparameters"])
    env_id = env_id or run["env"]
    atari = atari_settings(env_id, saved_atari_preprocessing(run)) if is_atari(env_id) else None
    # The runner checks the env's spaces as training did, and holds the saved normaliser.
    runner = EnvRunner(
        env_id,
        num_envs=1,
        normalize_obs=getattr(hps, "normalize_observations", False),
        atari=atari,
    )
    runner.close()
    runner.set_state(read_trainer_state(path)["obs_normalizer"])
    spec = LearnerSpec(
        algorithm=run["algorithm"],
        framework=run["framework"],
        module_spec=ModuleSpec(
            runner.observation_space, runner.action_space, model_config=run["model_config"]
        ),
        hyperparameters=hps,
    )
    learner = Learner(spec)
    learner.build()
    try:
        learner.load_state(checkpoint)
    except CheckpointError as exc:
        if env_id == run["env"]:
            raise
        raise CheckpointError(
            f"the policy at {path} was trained in {run['env']!r} and does not fit {env_id!r} "
            f"(observations {runner.observation_space}, actions {runner.action_space}): "
            f"evaluate it in {run['env']!r} or an env with the same spaces ({exc})"
        ) from exc
    module = next(iter(learner.module.values()))
    if is_recurrent_copy(module):
        weights = learner.backend.get_module_state(module)
        module_spec = spec.module_specs[DEFAULT_MODULE_ID]
        policy: Policy = RecurrentPolicy(weights, module_spec, run["framework"], explore)
    else:
        policy = policy_fn(learner.backend, module, explore=explore)
    return TrainedPolicy(
        run=run,
        env_id=env_id,
        observation_space=runner.observation_space,
        action_space=runner.action_space,
        policy=policy,
        normalize=runner.normalize,
        atari=atari,
    )


class RecurrentPolicy:
    """A recurrent module's policy for evaluation, through its numpy copy: it carries the
    state of the envs it acts for (their number, the rows of the first call after
    ``reset``), each starting from the initial state; ``reset()`` before new episodes, and
    ``reward(rewards)`` after each env step: the rewards become the next step's previous
    ones (``lstm_use_prev_reward``), as an env runner passes them."""

    def __init__(
        self, weights: Mapping[str, Any], module_spec: ModuleSpec, framework: str, explore: bool
    ) -> None:
        copy = numpy_copy_class(module_spec).from_weights(
            weights, module_spec, framework, np.random.default_rng(0)
        )
        self._copy, self._action_space = copy, module_spec.action_space
        self._act = copy.forward_exploration if explore else copy.forward_inference
        self._carrier: StateCarrier | None = None
        self._reads_reward = bool(module_spec.model_config.get("lstm_use_prev_reward"))
        self._owes_reward = False

    def reset(self) -> None:
        self._carrier, self._owes_reward = None, False

    def reward(self, rewards: Any) -> None:
        """The rewards the envs got for the last actions (one per env)."""
        if self._carrier is not None:
            shape = self._carrier.prev_rewards.shape
            self._carrier.prev_rewards = np.asarray(rewards, np.float32).reshape(shape)
        self._owes_reward = False

    def __call__(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        if self._owes_reward and self._reads_reward:
            raise ConfigError(
                "this recurrent module reads the previous reward (lstm_use_prev_reward): call "
                "policy.reward(rewards) after each env step, before the next action, and "
                "policy.reset() before new episodes"
            )
        if self._carrier is None or self._carrier.num_envs != len(obs):
            self._carrier = StateCarrier(lambda: self._copy, len(obs), self._action_space)
        carrier = self._carrier
        out = dict(self._act(carrier.inputs(obs)))
        carrier.state = np.asarray(out.pop(Columns.STATE_OUT), dtype=np.float32)
        carrier.prev_actions = np.asarray(out[Columns.ACTIONS], carrier.prev_actions.dtype)
        self._owes_reward = True
        return out


def evaluate_checkpoint(
    path: str, *, env_id: str | None = None, num_episodes: int = 10, seed: int = 1000
) -> tuple[float, list[float]]:
    """Mean return of the greedy policy saved at ``path`` (a run or checkpoint directory);
    for a multi-agent run, of the team return (every module greedy, agents mapped as at
    the checkpoint)."""
    if not _is_integer(num_episodes) or num_episodes < 1:
        raise ConfigError(f"evaluate at least one episode, got num_episodes={num_episodes!r}")
    if is_pettingzoo(env_id or read_run(path)["env"]):
        returns = [sum(r.values()) for r in evaluate_multi_agent(path, num_episodes, seed=seed)]
        return float(np.mean(returns)), returns
    trained = load_policy(path, env_id=env_id)
    returns = run_episodes(
        trained.env_id,
        trained.policy,
        num_episodes,
        seed=seed,
        normalize=trained.normalize,
        atari=trained.atari,
    )
    return float(np.mean(returns)), returns


def run_episodes(
    env_id: str,
    policy: Any,
    num_episodes: int,
    *,
    seed: int = 0,
    normalize: Any = None,
    atari: AtariSettings | None = None,
) -> list[float]:
    """Returns of ``num_episodes`` episodes of ``policy`` (numpy in, ``{"actions": ...}``
    out), in the game's own rewards (preprocessed frames with ``atari``)."""
    env = make_env(env_id, atari)
    low = getattr(env.action_space, "low", None)
    high = getattr(env.action_space, "high", None)
    returns = []
    for episode in range(num_episodes):
        obs, _ = env.reset(seed=seed + episode)
        if hasattr(policy, "reset"):  # a recurrent policy: each episode from its start
            policy.reset()
        total, done = 0.0, False
        while not done:
            x = np.asarray(obs)[None]  # uint8 frames stay uint8: the module scales them
            action = policy(normalize(x) if normalize else x)["actions"][0]
            if low is not None:
                action = np.clip(action, low, high)
            obs, reward, terminated, truncated, _ = env.step(action)
            if hasattr(policy, "reward"):  # a recurrent policy: the next previous reward
                policy.reward(np.array([reward], np.float32))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def evaluate_multi_agent(
    path: str, num_episodes: int, *, seed: int = 1000
) -> list[dict[str, float]]:
    """Each agent's return in ``num_episodes`` greedy episodes of a multi-agent run's
    checkpoint: its modules as they were then (self-play snapshots too), its mapping (a
    run trained with a callable mapping is evaluated with its initial mapping, saved as
    None: pass such runs' policies yourself)."""
    from learnerkit.loops._multi_agent import rebuild_module_specs

    run, state = read_run(path), read_trainer_state(path)
    algorithm = get_algorithm(run["algorithm"])
    hps = structure_hyperparameters(algorithm.hyperparameters, run["hyperparameters"])
    spec = LearnerSpec(
        algorithm=run["algorithm"],
        framework=run["framework"],
        module_spec=rebuild_module_specs(run["env"], state["modules"]),
        hyperparameters=hps,
    )
    learner = Learner(spec)
    learner.build()
    learner.load_state(checkpoint_dir(path))
    policies = {
        m: policy_fn(learner.backend, module, explore=False)
        for m, module in learner.module.items()
        if not is_recurrent_copy(module)
    }
    # A recurrent module acts for each agent with that agent's own state (RecurrentPolicy).
    recurrent = {
        m: (learner.backend.get_module_state(module), spec.module_specs[m])
        for m, module in learner.module.items()
        if is_recurrent_copy(module)
    }
    agent_policies: dict[str, RecurrentPolicy] = {}

    def policy_of(agent: str, module_id: str) -> Any:
        if module_id not in recurrent:
            return policies[module_id]
        if agent not in agent_policies:
            weights, module_spec = recurrent[module_id]
            agent_policies[agent] = RecurrentPolicy(weights, module_spec, run["framework"], False)
        return agent_policies[agent]

    saved_mapping = state.get("policy_mapping") or run.get("policy_mapping")
    mapping = policy_mapping_fn(saved_mapping or "shared")
    # Each module sees observations as it did in training: normalised with its statistics.
    normalizers = ObsNormalizers(
        getattr(hps, "normalize_observations", False), by_module=True, owner="checkpoint"
    )
    normalizers.set_state(state["obs_normalizer"])
    env = make_parallel_env(run["env"])
    episodes = []
    try:
        for episode in range(num_episodes):
            obs, _ = env.reset(seed=seed + episode)
            modules: dict[str, str] = {}
            returns: dict[str, float] = {}
            agent_policies.clear()  # each agent's state from its episode's start
            while env.agents:
                actions = {}
                for agent in env.agents:
                    module_id = modules.setdefault(agent, mapping(agent))
                    x = normalizers.normalize(module_id, np.asarray(obs[agent])[None])
                    actions[agent] = policy_of(agent, module_id)(x)["actions"][0]
                obs, rewards, _, _, _ = env.step(actions)
                for agent, reward in rewards.items():
                    returns[agent] = returns.get(agent, 0.0) + float(reward)
                    if agent in agent_policies:
                        agent_policies[agent].reward(np.array([reward], np.float32))
            episodes.append(returns)
    finally:
        env.close()
    return episodes
