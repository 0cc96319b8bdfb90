"""Ray env runners on a PettingZoo env: fragments of per-module rows from every actor, each
module's observation statistics merged over the actors, and module changes (add, mapping,
remove) queued to the actors and kept for a restarted one."""

from __future__ import annotations

import time

import numpy as np
import pytest
import ray
from conftest import TWO_ACTIONS
from gymnasium import spaces

from learnerkit import ConfigError, ModuleSpec, SamplingSettings
from learnerkit.loops.contract import EnvRunnerSpec, make_env_runners, on_policy_batch
from learnerkit.rollouts import RunnerModule

pytestmark = pytest.mark.ray

OBS = spaces.Box(0.0, 1.0, (3,), np.float32)


def test_ray_runners_sample_per_module_and_follow_module_changes():
    spec = EnvRunnerSpec(
        env_id="pettingzoo:multi_agent_envs:coordination",
        framework="torch",
        module_spec={"a": ModuleSpec(OBS, TWO_ACTIONS), "b": ModuleSpec(OBS, TWO_ACTIONS)},
        num_envs=2,
        rollout_fragment_length=16,
        policy_mapping="per_agent",
        normalize_observations=True,
    )
    runners = make_env_runners(
        spec,
        SamplingSettings(num_env_runners=2, num_cpus_per_env_runner=0.5, max_env_runner_restarts=1),
    )
    try:
        fragments = runners.sample()
        assert [f.runner_index for f in fragments] == [0, 1]
        batch = on_policy_batch(fragments, gamma=0.99, lambda_=0.95)
        assert sorted(batch) == ["a", "b"] and batch["a"].count == 2 * 2 * 16
        ids = batch["a"]["eps_id"]
        assert len(set(ids[:32]) & set(ids[32:])) == 0  # episode ids unique over runners
        # Each module's statistics, merged over both runners, go back with the weights.
        state = runners.get_state()
        assert state["a/obs_count"] == pytest.approx(batch["a"].count, abs=1e-3)
        assert state["b/obs_count"] == pytest.approx(batch["b"].count, abs=1e-3)
        runners.set_weights({"a": RunnerModule.from_spec(spec, "a").get_weights()}, 1)
        for actor in runners.actors:
            np.testing.assert_equal(ray.get(actor.get_state.remote()), state)

        # A frozen opponent "c", with weights of its own, now plays "b".
        other = RunnerModule("torch", ModuleSpec(OBS, TWO_ACTIONS), seed=7)
        runners.add_module("c", ModuleSpec(OBS, TWO_ACTIONS), other.get_weights())
        runners.set_policy_mapping({"a": "a", "b": "c"})
        before = runners.get_state()
        batch = on_policy_batch(runners.sample(), gamma=0.99, lambda_=0.95)
        assert sorted(batch) == ["a", "c"]
        after = runners.get_state()
        count = after["c/obs_count"] - before["c/obs_count"]
        assert count == pytest.approx(batch["c"].count, abs=1e-3)
        obs = np.array(batch["c"]["obs"])
        np.testing.assert_allclose(batch["c"]["vf_preds"], other.value(obs), atol=1e-5)

        # A runner restarted after its actor died is built with "c" and the new mapping.
        dead_before_sampling(runners.actors[1])
        batch = on_policy_batch(runners.sample(), gamma=0.99, lambda_=0.95)
        assert runners.metrics()["env_runner_restarts"] == 1
        assert sorted(batch) == ["a", "c"] and batch["c"].count > 0

        runners.set_policy_mapping("per_agent")
        runners.remove_module("c")
        assert "c/obs_count" not in runners.get_state()
        assert sorted(on_policy_batch(runners.sample(), gamma=0.99, lambda_=0.95)) == ["a", "b"]
        with pytest.raises(ConfigError, match=r"modules \['c'\], which the env runners do not"):
            runners.set_weights({"c": other.get_weights()}, 3)
    finally:
        runners.close()


def dead_before_sampling(actor, timeout_s: float = 60.0) -> None:
    """Kill ``actor`` and wait until Ray reports it dead (``ray.kill`` only starts the
    kill: a call sent at once may still be answered)."""
    ray.kill(actor)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.info.remote(), timeout=5)
        except ray.exceptions.RayActorError:
            return
        except ray.exceptions.GetTimeoutError:
            continue
        time.sleep(0.1)
    raise AssertionError(f"actor still alive {timeout_s} s after ray.kill")
