"""Training loops are plugins: found by entry point as algorithms are (learnerkit's own three
included), a broken, disabled or doubly claimed loop reported, an algorithm whose loop is
missing loaded but refused at train time, and a third-party loop package trained by
``learnerkit train`` with everything the host gives a run."""

from __future__ import annotations

import csv
import json
import sys
from importlib import metadata

import attrs
import numpy as np
import pytest
from conftest import bc_loss, make_plugin, run_learnerkit

import learnerkit
from learnerkit import (
    AsyncSettings,
    ConfigError,
    LoopInfo,
    OfflineSettings,
    OnPolicySettings,
    PluginError,
    ReplaySettings,
    SamplingSettings,
    UnknownTrainingLoopError,
)
from learnerkit.loops import TrainConfig, train
from learnerkit.loops.contract import Iteration

BUILT_IN = {
    "on_policy": (OnPolicySettings, {"uses_env_runners": True, "multi_agent": True}),
    "async": (AsyncSettings, {"uses_env_runners": True, "multi_agent": True, "sequences": True}),
    "offline": (OfflineSettings, {"uses_env_runners": False, "reads_dataset": True}),
    "replay": (ReplaySettings, {"uses_env_runners": True}),
}
BROKEN = {
    "broken_import": ["broken_import", "failed to import", "learnerkit_loop_dependency_that_is"],
    "not_a_loop": ["not_a_loop", "not a learnerkit.LoopInfo", "NAME = "],
    "unsampled_settings": ["unsampled_settings", "must derive from learnerkit.SamplingSettings"],
}


def _rows() -> dict[str, learnerkit.LoopPluginInfo]:
    return {row.name: row for row in learnerkit.list_training_loops()}


# Finding loops ---------------------------------------------------------------------------
def test_the_built_in_loops_come_through_learnerkits_own_entry_points():
    # What `pip install -e .` of learnerkit writes into its metadata.
    eps = metadata.distribution("learnerkit").entry_points.select(
        group=learnerkit.LOOP_ENTRY_POINT_GROUP
    )
    assert {ep.name for ep in eps} == set(BUILT_IN)
    rows = _rows()
    for name, (settings, declared) in BUILT_IN.items():
        info = learnerkit.get_training_loop(name)
        assert (info.package, info.settings) == ("learnerkit", settings)
        assert {k: v for k, v in info.declares().items() if v} == {
            k: v for k, v in declared.items() if v
        }
        assert rows[name].status == "ok"
        assert rows[name].entry_point == f"learnerkit.loops.builtin:{name.upper()}"


def test_a_third_party_loop_is_found_by_its_entry_point_and_its_code_waits(use_plugin_packages):
    with pytest.raises(UnknownTrainingLoopError, match="'full_batch' is not installed"):
        learnerkit.get_training_loop("full_batch")
    use_plugin_packages("learnerkit-fullbatch")
    info = learnerkit.get_training_loop("full_batch")
    assert (info.package, info.version) == ("learnerkit-fullbatch", "0.2.0")
    assert info.settings.__name__ == "FullBatchSettings"
    assert learnerkit.get_algorithm("a2c").training_loop == "full_batch"
    row = _rows()["full_batch"]
    assert (row.status, row.settings) == ("ok", "learnerkit_fullbatch:FullBatchSettings")
    assert "learnerkit_fullbatch.loop" not in sys.modules  # imported when it trains


def test_broken_loops_are_listed_with_their_errors_and_do_not_hide_the_others(
    use_plugin_packages,
):
    use_plugin_packages("learnerkit-fullbatch", "learnerkit-broken-loops")
    rows = _rows()
    assert rows["on_policy"].status == "ok"
    for name, fragments in BROKEN.items():
        assert rows[name].status == "error"
        assert rows[name].package == "learnerkit-broken-loops"
        for fragment in fragments:
            assert fragment in rows[name].error
    assert learnerkit.get_training_loop("async").name == "async"


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_the_strict_lookup_raises_the_broken_loops_error(use_plugin_packages, name):
    use_plugin_packages("learnerkit-broken-loops")
    with pytest.raises(PluginError) as excinfo:
        learnerkit.get_training_loop(name)
    for fragment in BROKEN[name]:
        assert fragment in str(excinfo.value)


def test_a_disabled_loop_is_listed_as_disabled_and_its_algorithms_cannot_train(
    use_plugin_packages, monkeypatch, tmp_path
):
    use_plugin_packages("learnerkit-fullbatch")
    monkeypatch.setenv("LEARNERKIT_DISABLE_PLUGINS", "full_batch")
    assert _rows()["full_batch"].status == "disabled"
    assert learnerkit.get_algorithm("a2c").training_loop == "full_batch"  # still loads
    with pytest.raises(UnknownTrainingLoopError, match=r"'a2c' cannot train.*disabled by"):
        train(TrainConfig(algorithm="a2c", out_dir=str(tmp_path), progress=False))


def test_two_distributions_claiming_one_loop_name_is_an_error_naming_both(use_plugin_packages):
    use_plugin_packages("learnerkit-fullbatch", "learnerkit-broken-loops")
    with pytest.raises(PluginError, match="claimed by two distributions") as excinfo:
        learnerkit.get_training_loop("full_batch")
    assert "learnerkit-fullbatch (learnerkit_fullbatch:full_batch)" in str(excinfo.value)
    assert "learnerkit-broken-loops (learnerkit_broken_loops:full_batch)" in str(excinfo.value)
    rows = [row for row in learnerkit.list_training_loops() if row.name == "full_batch"]
    assert len(rows) == 2 and all(row.status == "error" for row in rows)


# Algorithms and their loops ----------------------------------------------------------------
def test_an_algorithm_whose_loop_is_not_installed_loads_and_is_refused_when_it_trains(
    register, tmp_path
):
    register(
        make_plugin(
            "mctsish",
            hyperparameters=SamplingSettings,
            training_loop="search",
            compute_loss=bc_loss,
        )
    )
    row = next(r for r in learnerkit.list_plugins() if r.name == "mctsish")
    assert (row.status, row.training_loop) == ("ok", "search")
    with pytest.raises(UnknownTrainingLoopError) as excinfo:
        train(TrainConfig(algorithm="mctsish", out_dir=str(tmp_path), progress=False))
    message = str(excinfo.value)
    assert "algorithm 'mctsish' cannot train: training loop 'search' is not installed" in message
    assert "installed: async, offline, on_policy, replay" in message
    assert "group 'learnerkit.training_loops'" in message


def test_an_algorithm_loaded_before_its_loop_is_checked_against_its_settings_at_train_time(
    register, tmp_path
):
    register(make_plugin("early", training_loop="mine", compute_loss=bc_loss))
    learnerkit.register_training_loop(LoopInfo("mine", SamplingSettings, f"{__name__}:Counting"))
    try:
        with pytest.raises(PluginError, match=r"must derive from learnerkit\.settings\.Sampling"):
            train(TrainConfig(algorithm="early", out_dir=str(tmp_path), progress=False))
    finally:
        learnerkit.unregister_training_loop("mine")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"settings": dict}, "attrs subclass of learnerkit.Hyperparameters"),
        ({"settings": learnerkit.Hyperparameters}, "must derive from learnerkit.SamplingSettings"),
        ({"target": "no_colon"}, "must be 'module:Class'"),
        ({"uses_env_runners": False, "multi_agent": True}, "declares multi_agent or sequences"),
    ],
)
def test_a_loop_with_bad_metadata_is_refused_saying_what_is_wrong(kwargs, message):
    values = {"settings": SamplingSettings, "target": f"{__name__}:Counting", **kwargs}
    info = LoopInfo("bad", values.pop("settings"), values.pop("target"), **values)
    with pytest.raises(PluginError, match=message):
        learnerkit.register_training_loop(info)


class Counting:
    """A loop registered in code: counts its steps, samples nothing."""

    def __init__(self, run):
        self.run, self.steps = run, 0

    def start(self):
        pass

    def step(self, timesteps):
        self.steps += 1
        return Iteration(env_steps=10, episodes=[(1.0, 10)], metrics={"n": self.steps})

    def get_state(self):
        return {"steps": self.steps}

    def set_state(self, state):
        self.steps = state["steps"]


class WithArrays(Counting):
    """Its state holds an array, as a replay buffer's would."""

    restored = None

    def get_state(self):
        return {"steps": self.steps, "seen": np.arange(self.steps, dtype=np.uint8)}

    def set_state(self, state):
        WithArrays.restored = state
        self.steps = state["steps"]


class NoStep:
    def __init__(self, run):
        pass


def test_loop_code_without_a_required_method_is_refused_naming_it(register, tmp_path):
    learnerkit.register_training_loop(
        LoopInfo("nostep", SamplingSettings, f"{__name__}:NoStep", uses_env_runners=True)
    )
    register(
        make_plugin(
            "n", hyperparameters=SamplingSettings, training_loop="nostep", compute_loss=bc_loss
        )
    )
    try:
        with pytest.raises(PluginError, match=r"'nostep' .* lacks start, step, get_state, set_"):
            train(TrainConfig(algorithm="n", out_dir=str(tmp_path), progress=False))
    finally:
        learnerkit.unregister_training_loop("nostep")


@attrs.frozen(kw_only=True)
class CountingSettings(learnerkit.Hyperparameters):
    pass


def test_a_loop_without_env_runners_gets_every_host_output_resume_and_callbacks(register, tmp_path):
    learnerkit.register_training_loop(
        LoopInfo("counting", CountingSettings, f"{__name__}:Counting", uses_env_runners=False)
    )
    register(
        make_plugin(
            "c", hyperparameters=CountingSettings, training_loop="counting", compute_loss=bc_loss
        )
    )
    seen = []
    try:
        config = TrainConfig(algorithm="c", out_dir=str(tmp_path), progress=False)
        summary = train(
            attrs.evolve(config, stop_timesteps=30), on_iteration=lambda c: seen.append(c.iteration)
        )
        assert (summary.timesteps_total, summary.iterations, seen) == (30, 3, [1, 2, 3])
        resumed = train(attrs.evolve(config, stop_timesteps=50, resume=str(tmp_path)))
    finally:
        learnerkit.unregister_training_loop("counting")
    assert (resumed.timesteps_total, resumed.iterations, resumed.episodes_total) == (50, 5, 5)
    state = json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())
    assert state["loop"] == {"steps": 5}
    with open(tmp_path / "metrics.csv", newline="") as f:
        assert [int(r["n"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5]
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "tensorboard").is_dir()


def test_a_loop_state_holding_arrays_goes_into_the_checkpoint_and_comes_back(register, tmp_path):
    learnerkit.register_training_loop(
        LoopInfo("arrays", CountingSettings, f"{__name__}:WithArrays", uses_env_runners=False)
    )
    register(
        make_plugin(
            "a", hyperparameters=CountingSettings, training_loop="arrays", compute_loss=bc_loss
        )
    )
    config = TrainConfig(algorithm="a", out_dir=str(tmp_path), progress=False)
    try:
        train(attrs.evolve(config, stop_timesteps=30))
        checkpoint = tmp_path / "checkpoint"
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        assert "loop" not in state and (checkpoint / state["loop_file"]).is_file()
        train(attrs.evolve(config, stop_timesteps=40, resume=str(tmp_path)))
    finally:
        learnerkit.unregister_training_loop("arrays")
    assert WithArrays.restored["steps"] == 3
    seen = WithArrays.restored["seen"]
    assert seen.dtype == np.uint8 and seen.tolist() == [0, 1, 2]


def test_a_loop_refuses_what_it_does_not_declare(use_plugin_packages, tmp_path):
    use_plugin_packages("learnerkit-fullbatch")
    config = TrainConfig(algorithm="a2c", out_dir=str(tmp_path), progress=False)
    with pytest.raises(ConfigError, match=r"not from a dataset.*installed: 'offline' \(bc\)"):
        train(attrs.evolve(config, dataset="cartpole/any-v0"))
    with pytest.raises(ConfigError, match=r"gymnasium envs only.*'async' \(appo, impala\)"):
        train(attrs.evolve(config, env_id="pettingzoo:some_module"))


def test_ctrl_c_in_a_third_party_loop_leaves_a_checkpoint(use_plugin_packages, tmp_path):
    use_plugin_packages("learnerkit-fullbatch")

    def interrupt(ctx):
        if ctx.iteration == 2:
            raise KeyboardInterrupt

    summary = train(
        TrainConfig(algorithm="a2c", out_dir=str(tmp_path), progress=False, stop_timesteps=10_000),
        on_iteration=interrupt,
    )
    assert summary.interrupted and summary.iterations == 2
    state = json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())
    assert state["loop"] == {"updates": 8}


# The command line --------------------------------------------------------------------------
def _metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # a training run of a second or more
def test_learnerkit_train_trains_a_pip_installed_loop_and_resumes_it(plugin_dirs, tmp_path):
    run, site = tmp_path / "run", [plugin_dirs["learnerkit-fullbatch"]]
    args = ("-m", "learnerkit", "train", "a2c", "--out", str(run), "--quiet")
    proc = run_learnerkit(*args, "--stop-timesteps", "4096", plugin_dirs=site)
    assert proc.returncode == 0, proc.stderr
    rows = _metrics(run)
    assert [int(r["timesteps_total"]) for r in rows] == [512 * i for i in range(1, 9)]
    assert rows[-1]["num_updates_total"] == "32" and "learner/policy_loss" in rows[0]
    # It learns: a random policy averages about 22 on CartPole.
    assert float(rows[-1]["episode_return_mean"]) > float(rows[0]["episode_return_mean"]) + 10
    assert any((run / "tensorboard").iterdir()) and (run / "learning_curve.png").is_file()
    assert json.loads((run / "summary.json").read_text())["timesteps_total"] == 4096

    proc = run_learnerkit(*args, "--resume", str(run), "--stop-timesteps", "5120", plugin_dirs=site)
    assert proc.returncode == 0, proc.stderr
    rows = _metrics(run)
    assert [int(r["iteration"]) for r in rows] == list(range(1, 11))
    assert rows[-1]["num_updates_total"] == "40"
    state = json.loads((run / "checkpoint" / "trainer_state.json").read_text())
    assert (state["timesteps"], state["loop"]) == (5120, {"updates": 40})


def test_learnerkit_train_names_a_disabled_loop_in_one_line(plugin_dirs, tmp_path):
    proc = run_learnerkit(
        "-m", "learnerkit", "train", "a2c", "--out", str(tmp_path), "--quiet",
        plugin_dirs=[plugin_dirs["learnerkit-fullbatch"]],
        env={"LEARNERKIT_DISABLE_PLUGINS": "full_batch"},
    )  # fmt: skip
    assert proc.returncode == 2
    assert "training loop 'full_batch' is disabled by" in proc.stderr
    assert "Traceback" not in proc.stderr
