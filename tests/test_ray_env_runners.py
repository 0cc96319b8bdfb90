"""Env runners as Ray actors (``make_env_runners`` with ``num_env_runners >= 1``).
Synchronous sampling with the weights set, continuous polling, shared observation
statistics, restarts after a dead actor or a raising environment, and placement errors.
(Runners spread over a two-node cluster, training, are in test_ray_training.py.)

One Ray session (started by the first runners, as a training run's would be) serves the
module.

The raising environment, `FlakyCartPole`, is registered in code here, as a user would in a
notebook: RayEnvRunners ships the driver's registration (and, this file not being an
installed package, its code by value) to the actors, so no import path has to be set up.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs
import gymnasium
import numpy as np
import pytest
import ray
from conftest import CARTPOLE_OBS, TWO_ACTIONS
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from learnerkit import (
    DEFAULT_MODULE_ID,
    CheckpointError,
    ConfigError,
    ModuleSpec,
    SamplingSettings,
)
from learnerkit.errors import EnvRunnerError
from learnerkit.loops.contract import EnvRunners, EnvRunnerSpec, Fragment, make_env_runners
from learnerkit.rollouts import RunnerModule

pytestmark = pytest.mark.ray

HALF_CPU = 0.5  # two runners fit next to two more actors on this 2-core machine
T, N = 32, 2  # steps per fragment, environments per runner


class FlakyCartPole(CartPoleEnv):
    """CartPole whose ``step`` raises once it has made ``fail_after`` steps (over episodes),
    and takes ``delay_s`` seconds."""

    def __init__(self, fail_after: int, delay_s: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fail_after, self.delay_s, self.steps = fail_after, delay_s, 0

    def step(self, action):
        self.steps += 1
        if self.steps > self.fail_after:
            raise RuntimeError(f"FlakyCartPole lost its sensor after {self.fail_after} steps")
        time.sleep(self.delay_s)
        return super().step(action)


gymnasium.register("FlakyCartPole-v0", entry_point=FlakyCartPole, max_episode_steps=500)


def ray_runners(spec: EnvRunnerSpec, num_runners: int, **settings) -> EnvRunners:
    """Ray env runners as a run builds them (``num_cpus_per_env_runner``,
    ``max_env_runner_restarts``, ``sample_timeout_s`` as in ``SamplingSettings``)."""
    return make_env_runners(spec, SamplingSettings(num_env_runners=num_runners, **settings))


def cartpole_spec(**changes) -> EnvRunnerSpec:
    spec = EnvRunnerSpec(
        env_id="CartPole-v1",
        framework="torch",
        module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS),
        num_envs=N,
        rollout_fragment_length=T,
    )
    return attrs.evolve(spec, **changes)


def other_weights(spec: EnvRunnerSpec) -> tuple[dict, RunnerModule]:
    """Weights unlike the runners' initial ones, and a local module holding them."""
    local = RunnerModule.from_spec(attrs.evolve(spec, seed=123))
    return {DEFAULT_MODULE_ID: local.get_weights()}, local


def assert_acted_with(fragment: Fragment, local: RunnerModule) -> None:
    rollout = fragment.rollout
    for t in range(rollout.num_steps):
        obs = np.array(rollout.obs[t])  # writable: torch warns about read-only arrays
        np.testing.assert_allclose(rollout.vf_preds[t], local.value(obs), atol=1e-5)


def poll_until(runners, condition, timeout: float = 30.0) -> list[Fragment]:
    fragments: list[Fragment] = []
    deadline = time.monotonic() + timeout
    while not condition(fragments):
        assert time.monotonic() < deadline, f"only got {len(fragments)} fragments"
        fragments += runners.poll(1.0)
    return fragments


def from_runner(index: int):
    return lambda fragments: any(f.runner_index == index for f in fragments)


def test_unknown_env_id_is_a_config_error_not_a_ray_error():
    with pytest.raises(ConfigError, match=r"cannot make environment 'NoSuchEnv-v0'"):
        ray_runners(cartpole_spec(env_id="NoSuchEnv-v0"), 2)


@pytest.fixture(scope="module")
def runners():
    """Two runners normalising observations (in the tests' Ray session, or one they start:
    how a group starts Ray is checked in test_ray_learner_group.py)."""
    runners = ray_runners(
        cartpole_spec(normalize_observations=True), 2, num_cpus_per_env_runner=HALF_CPU
    )
    yield runners
    runners.close()


def test_a_local_run_starts_a_ray_of_its_own_beside_a_ray_started_on_this_machine(runners):
    """With no address, a run starts a local Ray of its own, even where `ray start` left a
    cluster's address for plain ``ray.init()`` to join (here: this session's, recorded in a
    Ray temp dir of the test's): joining it failed on object_store_memory, and would tie the
    run to another one's cluster."""
    existing = ray.get_runtime_context().gcs_address
    temp = Path(tempfile.mkdtemp(prefix="lk-ray-", dir="/tmp"))  # short: Ray's socket paths
    try:
        (temp / "ray").mkdir()
        (temp / "ray" / "ray_current_cluster").write_text(existing)
        code = (
            "import gymnasium, ray\n"
            "from learnerkit import ModuleSpec, SamplingSettings\n"
            "from learnerkit.loops.contract import EnvRunnerSpec, make_env_runners\n"
            "env = gymnasium.make('CartPole-v1')\n"
            "spec = EnvRunnerSpec(env_id='CartPole-v1', framework='torch', num_envs=1,\n"
            "    rollout_fragment_length=4,\n"
            "    module_spec=ModuleSpec(env.observation_space, env.action_space))\n"
            "settings = SamplingSettings(num_env_runners=1, num_cpus_per_env_runner=0.5)\n"
            "runners = make_env_runners(spec, settings)\n"
            "print(ray.get_runtime_context().gcs_address); runners.close(); ray.shutdown()"
        )
        environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**environ, "RAY_TMPDIR": str(temp)},
            timeout=120,
        )
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] != existing


def test_sample_returns_one_fragment_per_runner_with_the_version_set(runners):
    assert runners.observation_space.shape == (4,) and runners.action_space == TWO_ACTIONS
    runners.set_weights(other_weights(runners.spec)[0], 4)
    fragments = runners.sample()
    assert [f.runner_index for f in fragments] == [0, 1]
    assert all(f.rollout.obs.shape == (T, N, 4) and f.env_steps == T * N for f in fragments)
    assert all(f.weights_version == 4 for f in fragments)
    # Seeded apart: the runners' environments are not copies of each other.
    assert not np.array_equal(fragments[0].rollout.obs, fragments[1].rollout.obs)
    # A random CartPole policy ends an episode every ~20 steps: each of 64 steps ends some.
    assert all(f.episodes and all(length > 0 for _, length in f.episodes) for f in fragments)


def test_runners_act_with_the_weights_set(runners):
    weights, local = other_weights(runners.spec)
    runners.set_weights(weights, 5)
    for fragment in runners.sample():
        assert_acted_with(fragment, local)
    initial = RunnerModule.from_spec(runners.spec)
    obs = np.array(fragment.rollout.obs[0])
    assert not np.allclose(initial.value(obs), fragment.rollout.vf_preds[0])
    # The default module acts in numpy from the weights sent: no runner imported torch.
    assert ray.get([a.imported_frameworks.remote() for a in runners.actors]) == [[], []]
    # Weights the runners' module cannot load fail here, not unseen in the actors.
    with pytest.raises(CheckpointError, match=r"env runners' module .* unexpected \['x'\]"):
        runners.set_weights({DEFAULT_MODULE_ID: {"x": np.zeros(3)}}, 6)
    with pytest.raises(ConfigError, match=r"modules \['other'\], which the env runners do not"):
        runners.set_weights({"other": weights[DEFAULT_MODULE_ID]}, 6)


def test_poll_keeps_one_request_in_flight_per_runner_and_none_between_polls(runners):
    runners.set_weights(other_weights(runners.spec)[0], 6)
    fragments = poll_until(runners, lambda fs: len(fs) >= 8)
    assert {f.runner_index for f in fragments} == {0, 1}
    assert all(f.weights_version == 6 for f in fragments)
    # Between polls (the loop is busy feeding the learners) the fragments in flight finish
    # and no runner starts another: the back-pressure of learner_queue_policy="block".
    time.sleep(0.5)
    held = runners.poll(5.0)
    assert sorted(f.runner_index for f in held) == [0, 1]  # one each: nothing started meanwhile
    assert len(poll_until(runners, lambda fs: len(fs) >= 4)) >= 4  # sampling goes on


def test_observation_statistics_are_merged_over_runners_and_shipped_with_the_weights(runners):
    before = float(runners.get_state()["obs_count"])
    fragments = runners.sample()
    assert float(runners.get_state()["obs_count"]) == pytest.approx(before + 2 * T * N)
    assert all(f.obs_increment["count"] == T * N for f in fragments)
    runners.set_weights(other_weights(runners.spec)[0], 7)
    shared = runners.get_state()
    for actor in runners.actors:
        np.testing.assert_equal(ray.get(actor.get_state.remote()), shared)
    saved = {k: np.asarray(v).tolist() for k, v in shared.items()}  # as a checkpoint holds it
    runners.sample()
    runners.set_state(saved)
    np.testing.assert_allclose(runners.get_state()["obs_mean"], saved["obs_mean"])
    restored = ray.get(runners.actors[1].get_state.remote())
    np.testing.assert_allclose(restored["obs_count"], saved["obs_count"])


def test_killed_runner_is_restarted_with_the_current_weights_until_the_limit(runners, caplog):
    spec = cartpole_spec()
    flaky = ray_runners(spec, 2, num_cpus_per_env_runner=HALF_CPU, max_env_runner_restarts=1)
    try:
        weights, local = other_weights(spec)
        flaky.set_weights(weights, 9)
        flaky.poll(5.0)
        victim = flaky.info_by_index[1]
        ray.kill(flaky.actors[1])  # while it samples
        with caplog.at_level(logging.WARNING, logger="learnerkit"):
            poll_until(flaky, lambda _: flaky.metrics()["env_runner_restarts"] == 1)
        fragments = poll_until(flaky, from_runner(1))
        assert f"env runner 1 (node {victim['node_id']}, pid {victim['pid']}) failed" in caplog.text
        assert "its actor died" in caplog.text
        assert flaky.info_by_index[1]["actor_id"] != victim["actor_id"]
        assert flaky.metrics()["env_runner_restarts"] == 1
        restarted = [f for f in fragments if f.runner_index == 1][-1]
        assert restarted.weights_version == 9
        assert_acted_with(restarted, local)
        ray.kill(flaky.actors[0])
        with pytest.raises(EnvRunnerError, match=r"max_env_runner_restarts=1\).*actor died"):
            poll_until(flaky, lambda fs: False)
    finally:
        flaky.close()
        flaky.close()  # twice is fine


def test_raising_environment_is_reported_with_its_message_and_restarted(runners, caplog):
    # Each environment fails at its 41st step: in the second fragment of each runner.
    spec = cartpole_spec(env_id="FlakyCartPole-v0", env_kwargs={"fail_after": 40})
    flaky = ray_runners(spec, 1, num_cpus_per_env_runner=HALF_CPU, max_env_runner_restarts=1)
    try:
        flaky.sample()
        with caplog.at_level(logging.WARNING, logger="learnerkit"):
            [fragment] = flaky.sample()  # sampled again by the restarted runner
        message = "RuntimeError: FlakyCartPole lost its sensor after 40 steps"
        assert f"its environment or policy raised {message}" in caplog.text
        assert fragment.env_steps == T * N
        metrics = flaky.metrics()
        assert metrics["env_runner_restarts"] == metrics["env_runner_errors"] == 1
        assert metrics["env_runner_last_error"] == message
        with pytest.raises(EnvRunnerError, match=rf"max_env_runner_restarts=1\).*{message}"):
            flaky.sample()
    finally:
        flaky.close()


def test_environment_that_cannot_be_built_fails_the_start_with_its_error(runners):
    spec = cartpole_spec(env_id="FlakyCartPole-v0", env_kwargs={"bogus": 1})
    with pytest.raises(
        EnvRunnerError, match=r"env runner 0 failed to start: TypeError: .*fail_after"
    ):
        ray_runners(spec, 1, num_cpus_per_env_runner=HALF_CPU)


def test_runner_with_no_fragment_within_the_timeout_is_reported_stuck(runners):
    slow = {"fail_after": 10**6, "delay_s": 0.05}  # 64 steps: 3 s a fragment
    spec = cartpole_spec(env_id="FlakyCartPole-v0", env_kwargs=slow)
    stuck = ray_runners(spec, 1, num_cpus_per_env_runner=HALF_CPU, sample_timeout_s=1)
    try:
        start = time.monotonic()
        with pytest.raises(
            EnvRunnerError, match=r"env runners \[0\] .* within sample_timeout_s=1 s"
        ):
            stuck.poll(timeout=30.0)  # the timeout, not the poll's 30 s, decides
        assert time.monotonic() - start < 2.5
    finally:
        stuck.close()


def test_runners_the_cluster_cannot_hold_are_a_clear_error(runners, monkeypatch):
    with pytest.raises(EnvRunnerError, match=r"no node of the Ray cluster can hold one env runner"):
        ray_runners(cartpole_spec(), 1, num_cpus_per_env_runner=64)
    monkeypatch.setenv("LEARNERKIT_PLACEMENT_TIMEOUT_S", "1")
    start = time.monotonic()
    with pytest.raises(
        EnvRunnerError,
        match=r"could not reserve 3 x 1 CPU .* CPU: [\d.]+ free of 2.*--num-cpus-per-learner",
    ):
        ray_runners(cartpole_spec(), 3, num_cpus_per_env_runner=1)
    assert time.monotonic() - start < 10
