"""`learnerkit train` / `evaluate`: PPO learns CartPole, and a run's files, resume and Ctrl-C."""

from __future__ import annotations

import csv
import gc
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import bc_loss, make_plugin

from learnerkit import CheckpointError, ConfigError
from learnerkit.loops import TrainConfig, Trainer, evaluate_checkpoint, load_policy, train

# Small iterations (8 envs x 32 steps = 256 samples, 2 epochs) keep these runs short.
SMALL = {"rollout_fragment_length": 32, "num_epochs": 2}
SUMMARY_KEYS = {
    "algorithm",
    "env",
    "framework",
    "timesteps_total",
    "episode_return_mean",
    "wall_seconds",
    "reached_stop_reward",
}


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_ppo_learns_cartpole_within_a_short_budget(tmp_path, framework):
    summary = train(
        TrainConfig(
            framework=framework, stop_timesteps=40_000, out_dir=str(tmp_path), progress=False
        )
    )
    # A random policy averages about 22; the default PPO passes 150 well before 40k steps.
    assert summary.episode_return_mean > 150, summary
    mean, _ = evaluate_checkpoint(str(tmp_path), num_episodes=5)
    assert mean > 150
    # A policy outlives the learner that loaded it: a TF module's tf.function methods hold
    # the module by a weak reference, and once collected it was None inside them.
    policy = load_policy(str(tmp_path)).policy
    gc.collect()
    assert policy(np.zeros((1, 4), np.float32))["actions"].shape == (1,)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """(summary, run directory) of a four-iteration PPO run. Shared by the tests that only
    read what a run writes: none of them writes to the directory."""
    out = tmp_path_factory.mktemp("small_run")
    config = TrainConfig(stop_timesteps=1024, out_dir=str(out), progress=False, overrides=SMALL)
    return train(config), out


def test_a_run_writes_metrics_tensorboard_curve_checkpoint_and_summary(small_run):
    summary, run = small_run
    written = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(written)
    assert written["timesteps_total"] == summary.timesteps_total == 1024
    assert written["algorithm"] == "ppo" and written["env"] == "CartPole-v1"
    rows = _rows(run)
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert {"learner/policy_loss", "learner/vf_loss", "learner/learning_rate"} <= set(rows[0])
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "learning_curve.png").stat().st_size > 0
    assert load_policy(str(run)).run["algorithm"] == "ppo"  # the checkpoint loads


def test_a_runs_config_file_trains_another_run_with_its_hyperparameters(
    small_run, tmp_path, capsys
):
    # The error for a config file it cannot read says "a run writes one as config.json";
    # until now such a file was refused: "unknown hyperparameter(s) ['algorithm', 'env'...".
    from learnerkit.cli import main

    _, run = small_run
    again = tmp_path / "again"
    args = ["--config", str(run / "config.json"), "--stop-timesteps", "256", "--seed", "1"]
    assert main(["train", "ppo", *args, "--out", str(again), "--quiet"]) == 0
    first = json.loads((run / "config.json").read_text())
    second = json.loads((again / "config.json").read_text())
    assert second["seed"] == 1  # the command's, not the record's
    del first["hyperparameters"]["seed"], second["hyperparameters"]["seed"]
    assert second["hyperparameters"] == first["hyperparameters"]
    assert second["hyperparameters"]["rollout_fragment_length"] == SMALL["rollout_fragment_length"]
    # A record of another algorithm's run is refused, naming both.
    assert main(["train", "impala", "--config", str(run / "config.json"), "--quiet"]) == 2
    assert "records a run of 'ppo', whose hyperparameters 'impala'" in capsys.readouterr().err


def test_a_policy_evaluated_in_an_env_it_does_not_fit_names_both_envs(small_run):
    # It said only that the checkpoint's weights did not fit "this module".
    with pytest.raises(CheckpointError, match=r"trained in 'CartPole-v1' and does not fit 'Acrob"):
        evaluate_checkpoint(str(small_run[1]), env_id="Acrobot-v1", num_episodes=1)


@pytest.mark.parametrize("num_episodes", [0, -3, 2.5])
def test_an_evaluation_of_no_episodes_is_refused(small_run, num_episodes):
    # It returned nan (numpy's "mean of empty slice") and exited 0.
    with pytest.raises(ConfigError, match=r"evaluate at least one episode, got num_episodes="):
        evaluate_checkpoint(str(small_run[1]), num_episodes=num_episodes)


@pytest.mark.slow  # a training run of a second or more
def test_a_child_writes_tensorboard_and_training_imports_matplotlib_only_for_the_curve(tmp_path):
    code = f"""
import sys
from learnerkit.loops import TrainConfig, train
heavy = {{"matplotlib", "tensorboardX", "google.protobuf"}}
during = []
s = train(TrainConfig(stop_timesteps=512, out_dir={str(tmp_path)!r}, progress=False,
                      overrides={SMALL!r}),
          on_iteration=lambda ctx: during.append(sorted(heavy & set(sys.modules))))
print(during[-1], sorted(heavy & set(sys.modules)), s.curve)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # While it trains, nothing; at the end, matplotlib for the curve (issue 18: in a second
    # interpreter it cost the run's peak memory ~40 MiB more).
    assert proc.stdout.split() == ["[]", "['matplotlib']", str(tmp_path / "learning_curve.png")]
    assert (tmp_path / "learning_curve.png").stat().st_size > 0


def _tensorboard_scalars(run_dir) -> dict[tuple[str, int], float]:
    """(tag, step) -> value of every scalar in a run's event files (TFRecord framing: length,
    its CRC, the record, its CRC)."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for path in (run_dir / "tensorboard").glob("events.out.tfevents.*"):
        data = path.read_bytes()
        while data:
            length = int.from_bytes(data[:8], "little")
            event = event_pb2.Event.FromString(data[12 : 12 + length])
            data = data[12 + length + 4 :]
            for value in event.summary.value:
                scalars[value.tag, event.step] = value.simple_value
    return scalars


def test_tensorboard_events_hold_every_numeric_column_of_every_row(small_run):
    _, run = small_run
    scalars = _tensorboard_scalars(run)
    expected = {
        (name, int(row["timesteps_total"])): float(value)
        for row in _rows(run)
        for name, value in row.items()
        if value not in ("", "None", "nan")
    }
    assert expected and set(expected) == set(scalars)
    for key, value in expected.items():
        assert scalars[key] == pytest.approx(value, rel=1e-6), key


@pytest.fixture
def child_processes(monkeypatch) -> list[subprocess.Popen]:
    """The child processes this test starts (a run's output child among them)."""
    started = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    return started


def test_a_dead_output_child_costs_tensorboard_events_not_the_run(
    tmp_path, caplog, child_processes
):
    def kill_children_after_the_first_iteration(ctx):
        if ctx.iteration == 1:
            assert len(child_processes) == 1  # TensorBoard's writer
            for child in child_processes:
                child.kill()  # the output child dies while the run trains
                child.wait()

    config = TrainConfig(stop_timesteps=768, out_dir=str(tmp_path), progress=False, overrides=SMALL)
    with caplog.at_level(logging.WARNING, logger="learnerkit"):
        summary = train(config, on_iteration=kill_children_after_the_first_iteration)
    assert caplog.text.count("TensorBoard writer (a child process) stopped") == 1
    assert Path(summary.curve).stat().st_size > 0  # drawn by the training process
    assert [int(r["iteration"]) for r in _rows(tmp_path)] == [1, 2, 3]  # every row kept
    mean, _ = evaluate_checkpoint(str(tmp_path), num_episodes=1)  # and the checkpoint
    assert mean > 0


def test_a_run_that_fails_stops_its_output_child(tmp_path, child_processes):
    def fail(ctx):
        raise ValueError("a callback that fails")

    config = TrainConfig(stop_timesteps=512, out_dir=str(tmp_path), progress=False, overrides=SMALL)
    with pytest.raises(ValueError, match="a callback that fails"):
        train(config, on_iteration=fail)
    assert child_processes and all(child.poll() is not None for child in child_processes)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (["impala"], r"is ppo on torch, and a resumed run keeps both: drop 'impala'"),
        (["--framework", "tf"], r"is ppo on torch, and a resumed run keeps both: drop 'tf'"),
        (["--env", "Acrobot-v1"], r"trains in 'CartPole-v1'.*drop env_id='Acrobot-v1'"),
    ],
)
def test_a_resumed_run_refuses_another_algorithm_framework_or_env(small_run, capsys, given, says):
    # Each was dropped silently: the run went on as PPO on torch in CartPole.
    from learnerkit.cli import main

    _, run = small_run
    before = sorted(p.name for p in run.iterdir())
    assert main(["train", *given, "--resume", str(run), "--quiet"]) == 2
    assert re.search(says, capsys.readouterr().err)
    assert sorted(p.name for p in run.iterdir()) == before


def test_a_resumed_run_may_name_its_own_env_again(small_run, tmp_path):
    _, run = small_run
    config = TrainConfig(env_id="CartPole-v1", resume=str(run), out_dir=str(tmp_path))
    trainer = Trainer(config)
    try:
        assert trainer.timesteps == 1024  # restored from the run's checkpoint
    finally:
        trainer.close()


@pytest.mark.slow  # a training run of a second or more
def test_resume_continues_from_the_exact_saved_state(tmp_path):
    states = []
    config = TrainConfig(stop_timesteps=512, out_dir=str(tmp_path), progress=False, overrides=SMALL)
    train(config, on_iteration=lambda ctx: states.append(ctx.group.get_state()))
    saved = states[-1]  # the state after the last iteration: what the checkpoint holds
    trainer = Trainer(
        TrainConfig(
            stop_timesteps=1024, out_dir=str(tmp_path), resume=str(tmp_path), overrides=SMALL
        )
    )
    try:
        assert trainer.timesteps == 512 and trainer.iteration == 2
        restored = trainer.group.get_state()
        for name, array in saved["modules"]["default_policy"].items():
            np.testing.assert_array_equal(restored["modules"]["default_policy"][name], array)
        np.testing.assert_equal(restored["optimizers"], saved["optimizers"])
        assert restored["algorithm_state"] == saved["algorithm_state"]
    finally:
        trainer.close()
    # Resuming without overrides keeps the run's own (SMALL) hyperparameters.
    summary = train(
        TrainConfig(
            stop_timesteps=1024, out_dir=str(tmp_path), resume=str(tmp_path), progress=False
        )
    )
    assert summary.timesteps_total == 1024
    assert [int(r["iteration"]) for r in _rows(tmp_path)] == [1, 2, 3, 4]


def test_ctrl_c_leaves_a_usable_checkpoint(tmp_path, monkeypatch):
    real_step = Trainer.step

    def step_then_interrupt(self):
        row = real_step(self)
        if self.iteration == 2:
            raise KeyboardInterrupt
        return row

    monkeypatch.setattr(Trainer, "step", step_then_interrupt)
    summary = train(
        TrainConfig(stop_timesteps=10_000, out_dir=str(tmp_path), progress=False, overrides=SMALL)
    )
    assert summary.interrupted and summary.timesteps_total == 512
    mean, returns = evaluate_checkpoint(str(tmp_path), num_episodes=2)
    assert len(returns) == 2 and mean > 0


def test_an_algorithm_without_a_training_loop_is_refused_with_the_reason(tmp_path, register):
    register(make_plugin("loopless", compute_loss=bc_loss))
    with pytest.raises(ConfigError, match=r"declares no training loop.*Learner API"):
        train(TrainConfig(algorithm="loopless", out_dir=str(tmp_path), progress=False))


@pytest.mark.slow  # a training run of a second or more
def test_the_cli_trains_and_evaluates(tmp_path):
    run = [sys.executable, "-m", "learnerkit"]
    out = subprocess.run(
        [*run, "train", "--stop-timesteps", "512", "--out", str(tmp_path), "--quiet"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "learning curve:" in out and "checkpoint:" in out
    out = subprocess.run(
        [*run, "evaluate", str(tmp_path), "--episodes", "2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "mean return over 2 episodes" in out


@pytest.mark.slow  # the CLI in a fresh interpreter
def test_the_cli_names_a_bad_hyperparameter_in_one_line(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"clip_parm": 0.3}))
    proc = subprocess.run(
        [sys.executable, "-m", "learnerkit", "train", "--config", str(config), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "clip_parm" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow  # the CLI in a fresh interpreter
@pytest.mark.parametrize(
    ("contents", "expected"),
    [(None, "No such file or directory"), ("[1, 2]", "holds a list")],
    ids=["missing", "not-a-table"],
)
def test_the_cli_names_a_config_file_it_cannot_use_in_one_line(tmp_path, contents, expected):
    config = tmp_path / "config.json"
    if contents is not None:
        config.write_text(contents)
    proc = subprocess.run(
        [sys.executable, "-m", "learnerkit", "train", "--config", str(config), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert expected in proc.stderr and str(config) in proc.stderr
    assert "Traceback" not in proc.stderr
