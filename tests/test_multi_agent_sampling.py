"""Multi-agent sampling: PettingZoo parallel envs stepped with a module per agent group,
into MultiAgentBatches with GAE run over each agent's own trajectory. Agents that end
early or join late are checked row by row against a hand-computed reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import TWO_ACTIONS
from gymnasium import spaces

from learnerkit import Columns, ConfigError, ModuleSpec, SamplingSettings
from learnerkit.loops import TrainConfig, train
from learnerkit.loops.contract import EnvRunnerSpec, make_env_runners, on_policy_batch
from learnerkit.rollouts import (
    MultiAgentEnvRunner,
    RunningMeanStd,
    SequenceStreams,
    make_parallel_env,
    policy_mapping_fn,
)

GAMMA, LAMBDA = 0.9, 0.8
SCRIPTED = "pettingzoo:multi_agent_envs:scripted"
GAME = "pettingzoo:multi_agent_envs:coordination"


def value(obs: np.ndarray) -> np.ndarray:
    """A known value function: 0.1 * t + 0.01 * agent number."""
    return (0.1 * obs[:, 0] + 0.01 * obs[:, 1]).astype(np.float32)


def policy(obs: np.ndarray) -> dict[str, np.ndarray]:
    n = len(obs)
    return {
        Columns.ACTIONS: np.zeros(n, np.int64),
        Columns.ACTION_LOGP: np.full(n, -0.5, np.float32),
        Columns.VF_PREDS: value(obs),
        Columns.ACTION_DIST_INPUTS: np.zeros((n, 2), np.float32),
    }


def scripted_runner(num_envs: int = 1, mapping="per_agent") -> MultiAgentEnvRunner:
    return MultiAgentEnvRunner(
        lambda: make_parallel_env(SCRIPTED), num_envs=num_envs, mapping=policy_mapping_fn(mapping)
    )


@pytest.mark.parametrize("num_envs", [0, 2.5, "4"])
def test_a_number_of_envs_that_is_not_a_count_is_a_config_error(num_envs):
    with pytest.raises(ConfigError, match=r"MultiAgentEnvRunner: num_envs must be an integer"):
        scripted_runner(num_envs)


def reference_gae(rewards, values, last_value, terminated_at_end):
    """Slow GAE over one trajectory piece: bootstrap from last_value unless it terminated."""
    advantages, running = [], 0.0
    for t in reversed(range(len(rewards))):
        if t == len(rewards) - 1:
            next_value = 0.0 if terminated_at_end else last_value
        else:
            next_value = values[t + 1]
        delta = rewards[t] + GAMMA * next_value - values[t]
        running = delta + (GAMMA * LAMBDA * running if t < len(rewards) - 1 else 0.0)
        advantages.append(running)
    advantages = np.array(advantages[::-1])
    return advantages, advantages + np.asarray(values)


def v(t: int, number: int) -> float:
    return 0.1 * t + 0.01 * number


def test_agents_ending_early_and_joining_late_get_their_own_rows_and_advantages():
    runner = scripted_runner()
    names = {"policies": {m: policy for m in "abc"}, "value_fns": {m: value for m in "abc"}}
    batch = runner.sample(**names, num_steps=3).to_multi_agent_batch(gamma=GAMMA, lambda_=LAMBDA)
    assert sorted(batch) == ["a", "b", "c"]

    # "b" acts at steps 0 and 1 and terminates: no bootstrap.
    b = batch["b"]
    np.testing.assert_array_equal(b[Columns.OBS], [[0, 2], [1, 2]])
    np.testing.assert_array_equal(b[Columns.TERMINATEDS], [False, True])
    np.testing.assert_array_equal(b[Columns.TRUNCATEDS], [False, False])
    np.testing.assert_array_equal(b[Columns.T], [0, 1])
    adv, targets = reference_gae([2.0, 2.0], [v(0, 2), v(1, 2)], None, True)
    np.testing.assert_allclose(b[Columns.ADVANTAGES], adv, rtol=1e-5)
    np.testing.assert_allclose(b[Columns.VALUE_TARGETS], targets, rtol=1e-5)

    # "c" joins after step 0 and acts at steps 1 and 2, terminating at step 2.
    c = batch["c"]
    np.testing.assert_array_equal(c[Columns.OBS], [[1, 3], [2, 3]])
    np.testing.assert_array_equal(c[Columns.TERMINATEDS], [False, True])
    np.testing.assert_array_equal(c[Columns.T], [1, 2])
    adv, _ = reference_gae([3.0, 3.0], [v(1, 3), v(2, 3)], None, True)
    np.testing.assert_allclose(c[Columns.ADVANTAGES], adv, rtol=1e-5)

    # "a" is cut by the fragment's end after step 2: bootstrapped from V(obs at t=3).
    a = batch["a"]
    np.testing.assert_array_equal(a[Columns.OBS], [[0, 1], [1, 1], [2, 1]])
    np.testing.assert_array_equal(a[Columns.TERMINATEDS] | a[Columns.TRUNCATEDS], False)
    adv, targets = reference_gae([1.0] * 3, [v(t, 1) for t in range(3)], v(3, 1), False)
    np.testing.assert_allclose(a[Columns.ADVANTAGES], adv, rtol=1e-5)
    np.testing.assert_allclose(a[Columns.VALUE_TARGETS], targets, rtol=1e-5)
    assert len(set(np.concatenate([batch[m][Columns.EPS_ID] for m in "abc"]))) == 1
    assert runner.pop_episode_stats() == ([], [])

    # The next fragment: "a" steps 3 and 4, truncated at 4 (bootstrap from its final obs,
    # t=5); the episode ends, a new one starts at step 5 with "a" and "b".
    batch = runner.sample(**names, num_steps=3).to_multi_agent_batch(gamma=GAMMA, lambda_=LAMBDA)
    a = batch["a"]
    np.testing.assert_array_equal(a[Columns.OBS], [[3, 1], [4, 1], [0, 1]])
    np.testing.assert_array_equal(a[Columns.TRUNCATEDS], [False, True, False])
    np.testing.assert_array_equal(a[Columns.TERMINATEDS], False)
    first, second = a[Columns.EPS_ID][:2], a[Columns.EPS_ID][2]
    assert len(set(first)) == 1 and second != first[0]
    adv, _ = reference_gae([1.0, 1.0], [v(3, 1), v(4, 1)], v(5, 1), False)
    np.testing.assert_allclose(a[Columns.ADVANTAGES][:2], adv, rtol=1e-5)
    # The new episode's first step is cut by the fragment: bootstrapped from V(t=1).
    adv, _ = reference_gae([1.0], [v(0, 1)], v(1, 1), False)
    np.testing.assert_allclose(a[Columns.ADVANTAGES][2:], adv, rtol=1e-5)
    np.testing.assert_array_equal(batch["b"][Columns.OBS], [[0, 2]])
    assert "c" not in batch  # "c" has not joined the new episode yet
    stats, per_agent = runner.pop_episode_stats()
    assert stats == [(5 * 1.0 + 2 * 2.0 + 2 * 3.0, 5)]  # the team return and env steps
    assert per_agent == [{"a": 5.0, "b": 4.0, "c": 6.0}]


def test_several_envs_keep_their_trajectories_apart():
    runner = scripted_runner(num_envs=3, mapping="shared")
    fns = {"policies": {"default_policy": policy}, "value_fns": {"default_policy": value}}
    rollout = runner.sample(**fns, num_steps=6)
    assert rollout.num_envs == 3 and rollout.num_steps == 6
    batch = rollout.to_multi_agent_batch(gamma=GAMMA, lambda_=LAMBDA)["default_policy"]
    # Per env and episode: a 5 steps, b 2, c 2; then a and b act once in the next episode.
    assert batch.count == 3 * (5 + 2 + 2 + 2)
    for eps_id in np.unique(batch[Columns.EPS_ID]):
        rows = batch[Columns.EPS_ID] == eps_id
        for number in (1, 2, 3):
            mine = rows & (batch[Columns.OBS][:, 1] == number)
            steps = batch[Columns.T][mine]
            if len(steps):  # in the second episode "c" has not joined yet
                np.testing.assert_array_equal(steps, steps[0] + np.arange(len(steps)))
    assert len(runner.pop_episode_stats()[0]) == 3


def test_local_env_runners_return_a_multi_agent_batch_per_module():
    spec = EnvRunnerSpec(
        env_id=GAME,
        framework="torch",
        module_spec={
            "a": ModuleSpec(spaces.Box(0.0, 1.0, (3,), np.float32), TWO_ACTIONS),
            "b": ModuleSpec(spaces.Box(0.0, 1.0, (3,), np.float32), TWO_ACTIONS),
        },
        num_envs=4,
        rollout_fragment_length=16,
        policy_mapping="per_agent",
    )
    runners = make_env_runners(spec, SamplingSettings(num_env_runners=0))  # in this process
    try:
        fragments = runners.sample()
        batch = on_policy_batch(fragments, gamma=GAMMA, lambda_=LAMBDA)
        assert sorted(batch) == ["a", "b"]
        assert batch["a"].count == 4 * 16  # "a" acts every step of every env
        assert 0 < batch["b"].count <= 4 * 16
        assert fragments[0].env_steps == 64
        assert all(
            sum(r.values()) == ret
            for (ret, _), r in zip(fragments[0].episodes, fragments[0].agent_returns, strict=True)
        )
    finally:
        runners.close()


def test_bad_env_strings_and_envs_are_config_errors_with_the_fix():
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module'"):
        make_parallel_env("pettingzoo:no_such_module:f")
    with pytest.raises(ConfigError, match="has no callable 'nope'"):
        make_parallel_env("pettingzoo:multi_agent_envs:nope")
    with pytest.raises(ConfigError, match=r"not a pettingzoo\.ParallelEnv"):
        make_parallel_env("pettingzoo:multi_agent_envs:not_parallel")
    with pytest.raises(ConfigError, match="no callable 'parallel_env'"):
        make_parallel_env("pettingzoo:multi_agent_envs")


def test_agents_with_different_spaces_cannot_share_a_module(tmp_path):
    uneven = "pettingzoo:multi_agent_envs:uneven_coordination"
    config = TrainConfig(
        algorithm="ppo", env_id=uneven, policy_mapping="shared", out_dir=str(tmp_path)
    )
    with pytest.raises(ConfigError, match=r"agents 'a' and 'b' are both mapped to module"):
        train(config)


def test_a_mapping_to_a_module_the_runner_lacks_names_the_agent_and_the_fix():
    runner = scripted_runner(mapping={"a": "x", "b": "x", "c": "nowhere"})
    fns = {"policies": {"x": policy}, "value_fns": {"x": value}}
    with pytest.raises(ConfigError, match=r"sent agent 'c' to module 'nowhere'.*add_module"):
        runner.sample(**fns, num_steps=3)
    with pytest.raises(ConfigError, match="has no module for agent 'c'"):
        scripted_runner(mapping={"a": "x", "b": "x"}).sample(**fns, num_steps=3)
    with pytest.raises(ConfigError, match="is not one of"):
        policy_mapping_fn("everyone")


def test_each_module_normalises_its_own_observations_and_bootstraps_from_them():
    """Module "a" acts for agent a, module "bc" for b and c: each counts only its agents'
    observations, its policy, value function and rows see them normalised, and every
    row's new_obs is the observation its agent reached, as its module sees it."""
    mapping = policy_mapping_fn({"a": "a", "b": "bc", "c": "bc"})
    runner = MultiAgentEnvRunner(
        lambda: make_parallel_env(SCRIPTED), num_envs=2, mapping=mapping, normalize_obs=True
    )
    seen: dict[str, list[np.ndarray]] = {"a": [], "bc": []}

    def recording(module_id):
        def act(obs):
            seen[module_id].append(obs.copy())
            return policy(obs)

        return act

    policies = {m: recording(m) for m in seen}
    finished, cut = runner.step_segments(policies, num_steps=4)

    reference = RunningMeanStd((2,))  # agent a's statistics, as module "a" must keep them
    for t, obs in enumerate(seen["a"]):
        raw = np.array([[t, 1.0], [t, 1.0]], np.float32)  # a's [t, number] in both envs
        reference.update(raw)
        np.testing.assert_allclose(obs, reference.normalize(raw), rtol=1e-6)
    state = runner.get_state()
    assert sorted(state) == [f"{m}/obs_{k}" for m in ("a", "bc") for k in ("count", "mean", "var")]
    np.testing.assert_allclose(state["a/obs_mean"], reference.mean)
    assert state["bc/obs_count"] == pytest.approx(2 * (2 + 2), abs=1e-3)  # b and c, 2 steps each

    for segment in finished + cut:
        rows = segment.rows
        for row, following in itertools.pairwise(rows):
            np.testing.assert_array_equal(row["new_obs"], following["obs"])
    [a_cut, _] = [s for s in cut if s.agent == "a"]
    expected = reference.normalize(np.array([[4.0, 1.0]], np.float32))[0]  # not counted
    np.testing.assert_allclose(a_cut.rows[-1]["new_obs"], expected, rtol=1e-6)
    assert runner.get_state()["a/obs_count"] == state["a/obs_count"]

    restored = MultiAgentEnvRunner(
        lambda: make_parallel_env(SCRIPTED), num_envs=1, mapping=mapping, normalize_obs=True
    )
    restored.set_state(state)
    for key, value in state.items():
        np.testing.assert_array_equal(restored.get_state()[key], value)
    with pytest.raises(ConfigError, match="does not normalise observations"):
        scripted_runner().set_state(state)


def test_a_normalised_fragment_bootstraps_from_the_normalised_observation():
    runner = MultiAgentEnvRunner(
        lambda: make_parallel_env(SCRIPTED),
        num_envs=1,
        mapping=policy_mapping_fn("per_agent"),
        normalize_obs=True,
    )
    fns = {"policies": {m: policy for m in "abc"}, "value_fns": {m: value for m in "abc"}}
    a = runner.sample(**fns, num_steps=3).modules["a"]
    new_obs = runner.normalizers.normalize("a", np.array([[3.0, 1.0]], np.float32))
    assert a["next_values"][-1] == pytest.approx(value(new_obs)[0])
    np.testing.assert_allclose(a["next_values"][:-1], a["vf_preds"][1:])


@pytest.mark.parametrize(("normalize_obs", "dtype"), [(False, np.uint8), (True, np.float32)])
def test_uint8_observations_stay_uint8_unless_normalised(normalize_obs, dtype):
    runner = MultiAgentEnvRunner(
        lambda: make_parallel_env("pettingzoo:multi_agent_envs:scripted_pixels"),
        num_envs=1,
        mapping=policy_mapping_fn("per_agent"),
        normalize_obs=normalize_obs,
    )
    names = {"policies": {m: policy for m in "abc"}, "value_fns": {m: value for m in "abc"}}
    batch = runner.sample(**names, num_steps=3).to_multi_agent_batch(gamma=GAMMA, lambda_=LAMBDA)
    assert {batch[m][Columns.OBS].dtype for m in "abc"} == {np.dtype(dtype)}
    # Whole sequences (the asynchronous loop's fragments) too.
    sequences = SequenceStreams(2).sample(runner, names["policies"], version=0).to_sequences()
    assert {sequences[m][Columns.OBS].dtype for m in sequences} == {np.dtype(dtype)}
