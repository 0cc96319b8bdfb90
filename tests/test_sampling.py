"""EnvRunner and Rollout: shapes, episode bookkeeping, bootstrapping of truncated episodes,
observation normalisation, and errors."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from learnerkit import Columns, SampleBatch
from learnerkit.errors import BatchError, ConfigError
from learnerkit.rollouts import EnvRunner, Rollout

COUNT_ENV = "LearnerkitTest/Count-v0"
DICT_OBS_ENV = "LearnerkitTest/DictObs-v0"
TIME_LIMIT = 5


class CountEnv(gymnasium.Env):
    """Observation [steps since reset, action received]; reward 1 a step; terminates when
    the action received is >= 1. Registered with a 5-step time limit."""

    def __init__(self, action_kind: str = "discrete") -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = {
            "discrete": spaces.Discrete(2),
            "box": spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32),
            "multibinary": spaces.MultiBinary(2),
        }[action_kind]
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is outside {self.action_space}")
        self._t += 1
        received = float(np.asarray(action).reshape(-1)[0])
        obs = np.array([self._t, received], dtype=np.float32)
        return obs, 1.0, received >= 1.0, False, {}


class DictObsEnv(CountEnv):
    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Dict({"x": spaces.Discrete(2)})


@pytest.fixture(scope="module", autouse=True)
def test_envs():
    gymnasium.register(COUNT_ENV, entry_point=CountEnv, max_episode_steps=TIME_LIMIT)
    gymnasium.register(DICT_OBS_ENV, entry_point=DictObsEnv)
    yield
    del gymnasium.registry[COUNT_ENV]
    del gymnasium.registry[DICT_OBS_ENV]


def random_policy(action_space, seed=0, action_scale=1.0):
    """Uniform actions (Discrete) or Gaussian ones (Box; scaled past the bounds on purpose)."""
    rng = np.random.default_rng(seed)

    def policy(obs):
        n = len(obs)
        if isinstance(action_space, spaces.Discrete):
            actions = rng.integers(action_space.n, size=n)
            dist_inputs = np.zeros((n, action_space.n), dtype=np.float32)
            logp = np.full(n, -np.log(action_space.n), dtype=np.float32)
        else:
            dim = action_space.shape[0]
            actions = (action_scale * rng.normal(size=(n, dim))).astype(np.float32)
            dist_inputs = np.zeros((n, 2 * dim), dtype=np.float32)
            logp = rng.normal(size=n).astype(np.float32)
        return {
            Columns.ACTIONS: actions,
            Columns.ACTION_LOGP: logp,
            Columns.VF_PREDS: obs.sum(axis=1),
            Columns.ACTION_DIST_INPUTS: dist_inputs,
        }

    return policy


def zero_value(obs):
    return np.zeros(len(obs), dtype=np.float32)


# Shapes and bookkeeping on real environments ---------------------------------------------
def test_cartpole_rollout_has_time_major_shapes_and_dtypes():
    with EnvRunner("CartPole-v1", num_envs=4, seed=0) as runner:
        rollout = runner.sample(random_policy(runner.action_space), zero_value, 64)
        assert runner.num_env_steps == 256
    assert rollout.obs.shape == (64, 4, 4) and rollout.obs.dtype == np.float32
    assert rollout.actions.shape == (64, 4) and rollout.actions.dtype == np.int64
    assert rollout.action_dist_inputs.shape == (64, 4, 2)
    for name in ("rewards", "vf_preds", "action_logp", "next_values"):
        array = getattr(rollout, name)
        assert array.shape == (64, 4) and array.dtype == np.float32, name
    assert rollout.terminateds.dtype == rollout.truncateds.dtype == np.bool_
    assert rollout.terminateds.any(), "random CartPole episodes end within 64 steps"


def test_cartpole_episode_stats_count_completed_episodes_once():
    with EnvRunner("CartPole-v1", num_envs=4, seed=0) as runner:
        policy = random_policy(runner.action_space)
        rollout = runner.sample(policy, zero_value, 64)
        stats = runner.pop_episode_stats()
        assert runner.pop_episode_stats() == []
    ended = rollout.terminateds | rollout.truncateds
    assert len(stats) == ended.sum()
    for episode_return, length in stats:
        assert episode_return == length  # CartPole pays 1 per step
    assert sum(length for _, length in stats) <= 256


def test_pendulum_stores_unclipped_box_actions_and_truncates_at_its_time_limit():
    with EnvRunner("Pendulum-v1", num_envs=2, seed=0) as runner:
        rollout = runner.sample(
            random_policy(runner.action_space, action_scale=5.0), zero_value, 200
        )
        stats = runner.pop_episode_stats()
    assert rollout.actions.shape == (200, 2, 1) and rollout.actions.dtype == np.float32
    assert np.abs(rollout.actions).max() > 2.0  # beyond the bounds: stored as sampled
    assert rollout.action_dist_inputs.shape == (200, 2, 2)
    assert rollout.truncateds[-1].all() and not rollout.truncateds[:-1].any()
    assert not rollout.terminateds.any()
    assert [length for _, length in stats] == [200, 200]
    assert all(episode_return < 0.0 for episode_return, _ in stats)


def test_sample_batch_is_flattened_time_major_with_advantages():
    with EnvRunner("CartPole-v1", num_envs=3, seed=1) as runner:
        rollout = runner.sample(random_policy(runner.action_space), zero_value, 10)
    batch = rollout.to_sample_batch(gamma=0.99, lambda_=0.95)
    assert isinstance(batch, SampleBatch) and batch.count == 30
    assert set(batch) == {
        Columns.OBS,
        Columns.ACTIONS,
        Columns.REWARDS,
        Columns.TERMINATEDS,
        Columns.TRUNCATEDS,
        Columns.VF_PREDS,
        Columns.ACTION_LOGP,
        Columns.ACTION_DIST_INPUTS,
        Columns.ADVANTAGES,
        Columns.VALUE_TARGETS,
    }
    np.testing.assert_array_equal(batch[Columns.OBS][2 * 3 + 1], rollout.obs[2, 1])
    np.testing.assert_array_equal(batch[Columns.ACTIONS][7 * 3 + 2], rollout.actions[7, 2])
    np.testing.assert_allclose(
        batch[Columns.VALUE_TARGETS], batch[Columns.ADVANTAGES] + batch[Columns.VF_PREDS], rtol=1e-6
    )


# Exact bootstrapping on a scripted environment -------------------------------------------
# Actions per step (rows) and environment (columns), with a 5-step time limit:
#   env 0 never terminates: truncated at t=4 and t=9, mid-episode at the end;
#   env 1 terminates at t=2, is truncated at t=7, terminates at t=9;
#   env 2 terminates on the time limit's last step (t=4): terminated wins over truncated;
#         then it is truncated at t=9.
SCHEDULE = np.zeros((12, 3), dtype=np.int64)
SCHEDULE[2, 1] = SCHEDULE[9, 1] = SCHEDULE[4, 2] = 1


class ScriptedPolicy:
    """Plays SCHEDULE; V(s) = 100 + steps since reset. The value_fn below uses 1000 + ..., so
    every next_value says which of the two it came from."""

    def __init__(self, continuous: bool = False) -> None:
        self.t = 0
        self.continuous = continuous

    def __call__(self, obs):
        actions = SCHEDULE[self.t % len(SCHEDULE)]
        self.t += 1
        if self.continuous:  # 3.0 is clipped to the bound 1.0, which terminates
            actions = (3.0 * actions - 0.5).astype(np.float32)[:, None]
        n = len(obs)
        return {
            Columns.ACTIONS: actions,
            Columns.ACTION_LOGP: np.zeros(n),
            Columns.VF_PREDS: 100.0 + obs[:, 0],
            Columns.ACTION_DIST_INPUTS: np.zeros((n, 2)),
        }


class RecordingValueFn:
    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def __call__(self, obs):
        self.calls.append(obs.copy())
        return 1000.0 + obs[:, 0]


def expected_scripted_flags():
    terminateds = np.zeros((12, 3), dtype=bool)
    truncateds = np.zeros((12, 3), dtype=bool)
    truncateds[[4, 9], 0] = True
    terminateds[[2, 9], 1] = True
    truncateds[7, 1] = True
    terminateds[4, 2] = truncateds[4, 2] = True
    truncateds[9, 2] = True
    return terminateds, truncateds


@pytest.mark.parametrize("action_kind", ["discrete", "box"])
def test_truncated_episodes_bootstrap_from_value_fn_on_their_final_observation(action_kind):
    value_fn = RecordingValueFn()
    with EnvRunner(
        COUNT_ENV, num_envs=3, seed=0, env_kwargs={"action_kind": action_kind}
    ) as runner:
        rollout = runner.sample(ScriptedPolicy(action_kind == "box"), value_fn, 12)
        stats = runner.pop_episode_stats()

    terminateds, truncateds = expected_scripted_flags()
    np.testing.assert_array_equal(rollout.terminateds, terminateds)
    np.testing.assert_array_equal(rollout.truncateds, truncateds)
    counters = rollout.obs[:, :, 0]
    expected = np.where(terminateds, 0.0, 100.0 + counters + 1)  # next step's vf_preds
    truncated_only = truncateds & ~terminateds
    expected[truncated_only] = 1000.0 + TIME_LIMIT  # value_fn of the final obs, not the reset
    expected[-1] = np.where(terminateds[-1], 0.0, 1000.0 + counters[-1] + 1)
    np.testing.assert_array_equal(rollout.next_values, expected)

    # One batched call: truncated final observations (in step order), then the bootstrap.
    assert len(value_fn.calls) == 1
    (inputs,) = value_fn.calls
    assert len(inputs) == truncated_only.sum() + 3
    k = truncated_only.sum()
    np.testing.assert_array_equal(inputs[:k, 0], [TIME_LIMIT] * k)
    np.testing.assert_array_equal(inputs[k:, 0], counters[-1] + 1)
    assert sorted(stats) == sorted([(5.0, 5)] * 2 + [(3.0, 3), (5.0, 5), (2.0, 2)] + [(5.0, 5)] * 2)


def test_box_actions_are_clipped_for_the_env_but_stored_unclipped():
    with EnvRunner(COUNT_ENV, num_envs=3, env_kwargs={"action_kind": "box"}) as runner:
        rollout = runner.sample(ScriptedPolicy(continuous=True), RecordingValueFn(), 12)
    # CountEnv raises on actions outside its space, so getting here means they were clipped.
    assert rollout.actions[2, 1, 0] == 2.5 and rollout.terminateds[2, 1]
    # The observation records the action received: in-bounds ones pass through unchanged.
    np.testing.assert_array_equal(rollout.obs[1:4, 0, 1], [-0.5, -0.5, -0.5])


def test_consecutive_samples_continue_the_same_episodes():
    with EnvRunner(COUNT_ENV, num_envs=3) as runner:
        policy = ScriptedPolicy()
        first = runner.sample(policy, RecordingValueFn(), 3)
        second = runner.sample(policy, RecordingValueFn(), 3)
        assert runner.num_env_steps == 18
    np.testing.assert_array_equal(second.obs[0, :, 0], [3.0, 0.0, 3.0])  # env 1 ended at t=2
    np.testing.assert_array_equal(first.next_values[-1], [1003.0, 0.0, 1003.0])


# Observation normalisation ---------------------------------------------------------------
def test_normalisation_counts_every_observation_the_policy_saw_and_round_trips():
    with EnvRunner("CartPole-v1", num_envs=4, seed=0, normalize_obs=True) as runner:
        rollout = runner.sample(random_policy(runner.action_space), zero_value, 50)
        state = runner.get_state()
        raw = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
        expected = runner.normalize(raw)
    assert set(state) == {"obs_mean", "obs_var", "obs_count"}
    assert state["obs_count"] == pytest.approx(200, abs=1e-3)
    assert np.abs(rollout.obs).max() <= 10.0
    assert abs(rollout.obs[-10:].mean()) < 1.0

    with EnvRunner("CartPole-v1", num_envs=2, normalize_obs=True) as restored:
        restored.set_state(state)
        np.testing.assert_array_equal(restored.normalize(raw), expected)
        for key, value in state.items():
            np.testing.assert_array_equal(restored.get_state()[key], value)


def test_without_normalisation_state_is_empty_and_statistics_are_refused():
    with EnvRunner("CartPole-v1", num_envs=1) as runner:
        assert runner.get_state() == {}
        runner.set_state({})
        with pytest.raises(ConfigError, match="normalize_obs=True"):
            runner.set_state({"obs_mean": np.zeros(4)})


# Errors ----------------------------------------------------------------------------------
def test_unknown_env_id_is_a_config_error_naming_the_id_and_the_registry():
    with pytest.raises(ConfigError, match=r"'NoSuchEnv-v0'.*pprint_registry"):
        EnvRunner("NoSuchEnv-v0", num_envs=1)


@pytest.mark.parametrize("num_envs", [0, 2.5, "4"])
def test_a_number_of_envs_that_is_not_a_count_is_a_config_error(num_envs):
    with pytest.raises(ConfigError, match=r"EnvRunner: num_envs must be an integer >= 1"):
        EnvRunner("CartPole-v1", num_envs=num_envs)


def test_unsupported_spaces_are_config_errors():
    with pytest.raises(ConfigError, match="only Box observations"):
        EnvRunner(DICT_OBS_ENV, num_envs=1)
    with pytest.raises(ConfigError, match="only Discrete and Box actions"):
        EnvRunner(COUNT_ENV, num_envs=1, env_kwargs={"action_kind": "multibinary"})


def test_policy_output_missing_a_column_or_of_the_wrong_shape_is_a_batch_error():
    def no_logp(obs):
        out = ScriptedPolicy()(obs)
        del out[Columns.ACTION_LOGP]
        return out

    def vf_preds_2d(obs):
        out = ScriptedPolicy()(obs)
        out[Columns.VF_PREDS] = out[Columns.VF_PREDS][:, None]
        return out

    with EnvRunner(COUNT_ENV, num_envs=3) as runner:
        with pytest.raises(BatchError, match="action_logp"):
            runner.sample(no_logp, RecordingValueFn(), 2)
        with pytest.raises(BatchError, match=r"'vf_preds' has shape \(3, 1\); expected \(3,\)"):
            runner.sample(vf_preds_2d, RecordingValueFn(), 2)
        with pytest.raises(BatchError, match="value_fn returned shape"):
            runner.sample(ScriptedPolicy(), lambda obs: np.zeros((len(obs), 1)), 2)


def test_rollout_rejects_arrays_with_different_leading_axes():
    t_n = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(BatchError, match=r"Rollout.obs has shape \(3, 2, 1\)"):
        Rollout(
            obs=np.zeros((3, 2, 1)),
            next_obs=np.zeros((3, 2, 1)),
            actions=t_n,
            rewards=t_n,
            terminateds=t_n,
            truncateds=t_n,
            vf_preds=t_n,
            action_logp=t_n,
            action_dist_inputs=t_n,
            next_values=t_n,
        )


def test_a_policy_error_mid_fragment_leaves_the_runner_where_the_environments_are():
    scripted = ScriptedPolicy()

    def fails_at_step_two(obs):
        if scripted.t == 2:
            raise RuntimeError("policy crashed")
        return scripted(obs)

    with EnvRunner(COUNT_ENV, num_envs=3) as runner:
        with pytest.raises(RuntimeError, match="policy crashed"):
            runner.sample(fails_at_step_two, RecordingValueFn(), 5)
        assert runner.num_env_steps == 6
        rollout = runner.sample(ScriptedPolicy(), RecordingValueFn(), 1)
    np.testing.assert_array_equal(rollout.obs[0, :, 0], [2.0, 2.0, 2.0])
