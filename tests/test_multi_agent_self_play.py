"""Modules changing while training: the docs' self-play example (docs/guides/multi-agent.md)
runs (snapshots of "main" become frozen opponents), the learners and env runners follow
every change, the checkpoint holds the snapshots, and the run resumes with them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from learnerkit import ConfigError
from learnerkit.loops import TrainConfig, train

PAGE = Path(__file__).parent.parent / "docs" / "guides" / "multi-agent.md"
PENNIES = "pettingzoo:multi_agent_envs:pennies"
SETTINGS = {
    "num_envs_per_env_runner": 4,
    "rollout_fragment_length": 32,
    "minibatch_size": 64,
    "num_epochs": 2,
}


def docs_self_play() -> str:
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S) if "self_play" in b
    )
    # The same code on the test's pennies game, snapshotting every 2 iterations, briefly.
    for old, new in (
        ("pettingzoo:my_games:parallel_env", PENNIES),
        ("SNAPSHOT_EVERY = 10", "SNAPSHOT_EVERY = 2"),
        ("stop_timesteps=200_000,", f"stop_timesteps=640, overrides={SETTINGS}, progress=False,"),
    ):
        assert old in block
        block = block.replace(old, new)
    return block


def test_the_docs_self_play_example_adds_frozen_snapshots_as_opponents(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(docs_self_play(), str(PAGE), "exec"), {})
    (run,) = (tmp_path / "runs").iterdir()
    state = json.loads((run / "checkpoint" / "trainer_state.json").read_text())
    assert state["policy_mapping"] == {"player_0": "main", "player_1": "main_v4"}
    assert sorted(state["modules"]) == ["main", "main_v2", "main_v4"]
    assert [state["modules"][m]["train"] for m in ("main", "main_v2", "main_v4")] == [
        True,
        False,
        False,
    ]
    assert state["timesteps"] == 640  # 5 iterations of 128 env steps: training went on
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "module_steps/main_v2" in header  # the opponent's rows were sampled


def test_learners_and_runners_follow_changes_and_frozen_modules_keep_their_weights(tmp_path):
    seen = {}

    def callback(ctx):
        group, runners = ctx.group, ctx.runners
        if ctx.iteration == 1:
            seen["main"] = group.get_weights()["main"]
            ctx.add_module("frozen", copy_of="main", train=False)
            ctx.set_policy_mapping({"player_0": "main", "player_1": "frozen"})
            assert "frozen" in runners.spec.module_specs
            assert sorted(group.modules_to_train) == ["main"]
            with pytest.raises(ConfigError, match="give either module_spec or copy_of"):
                ctx.add_module("other")
        elif ctx.iteration == 3:
            frozen = group.get_weights()["frozen"]
            for name, value in seen["main"].items():
                np.testing.assert_array_equal(frozen[name], value)
            runner_weights = runners.sampler.get_weights()["frozen"]
            for name, value in seen["main"].items():
                np.testing.assert_array_equal(runner_weights[name], value)
            assert ctx.metrics["module_steps/frozen"] > 0
            assert "learner/frozen/policy_loss" not in ctx.metrics  # sampled, not trained
            ctx.set_policy_mapping({"player_0": "main", "player_1": "main"})
            ctx.remove_module("frozen")
            assert "frozen" not in runners.spec.module_specs
            assert "frozen" not in group.get_weights()

    config = TrainConfig(
        env_id=PENNIES,
        policy_mapping={"player_0": "main", "player_1": "main"},
        stop_timesteps=5 * 128,
        out_dir=str(tmp_path / "run"),
        overrides=SETTINGS,
        progress=False,
    )
    summary = train(config, on_iteration=callback)
    assert summary.timesteps_total == 640


@pytest.mark.slow  # a training run of a second or more
def test_a_self_play_run_resumes_with_its_snapshots(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(docs_self_play(), str(PAGE), "exec"), {})
    (run,) = (tmp_path / "runs").iterdir()
    resumed = train(
        TrainConfig(resume=str(run), stop_timesteps=896, progress=False, out_dir=str(run))
    )
    assert resumed.timesteps_total == 896
    state = json.loads((run / "checkpoint" / "trainer_state.json").read_text())
    assert sorted(state["modules"]) == ["main", "main_v2", "main_v4"]
    assert state["policy_mapping"] == {"player_0": "main", "player_1": "main_v4"}
