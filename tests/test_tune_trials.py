"""Sweeps on Ray Tune, end to end: a resumed (or cloned) run trains with its own learning
rate and entropy coefficient, an ASHA sweep of PPO's learning rate finds one that solves
CartPole-v1, and population-based training clones trials and they keep learning. (The
sweep across two nodes is in test_two_node_cluster.py, with the other cluster tests.)"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from learnerkit.cli import main
from learnerkit.loops import TrainConfig, Trainer
from learnerkit.tune import SweepConfig, parse_space, sweep


def one_iteration(config: TrainConfig) -> dict:
    trainer = Trainer(config)
    try:
        row = trainer.step()
        trainer.save_checkpoint()
        return row
    finally:
        trainer.close()


def test_a_resumed_run_trains_with_its_own_learning_rate_and_entropy_coeff(tmp_path, framework):
    # What population-based training does to a cloned trial: the donor's checkpoint (its
    # optimizer state holds the donor's learning rate) with new hyperparameters on top.
    donor = one_iteration(
        TrainConfig(
            algorithm="ppo",
            env_id="CartPole-v1",
            framework=framework,
            progress=False,
            out_dir=str(tmp_path / "donor"),
            overrides={"learning_rate": 1e-3, "entropy_coeff": 0.0},
        )
    )
    assert donor["learner/learning_rate"] == pytest.approx(1e-3)
    clone = one_iteration(
        TrainConfig(
            algorithm="ppo",
            env_id="CartPole-v1",
            framework=framework,
            progress=False,
            out_dir=str(tmp_path / "clone"),
            resume=str(tmp_path / "donor"),
            overrides={"learning_rate": 4e-4, "entropy_coeff": 0.01},
        )
    )
    assert clone["learner/learning_rate"] == pytest.approx(4e-4)
    assert clone["learner/entropy_coeff"] == pytest.approx(0.01)
    assert clone["timesteps_total"] == 2 * donor["timesteps_total"]  # the donor's counters
    assert clone["iteration"] == 2


def rows(progress: Path) -> list[dict]:
    with progress.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.ray
def test_an_asha_sweep_of_ppos_learning_rate_solves_cartpole(tmp_path, capsys):
    # Two trials, one at a time: the second waits for the first, and ASHA judges it against
    # the first one's results (13 s alone; four trials two at a time took 24 s).
    out = tmp_path / "sweep"
    code = main(
        [
            "tune",
            "ppo",
            "--env",
            "CartPole-v1",
            "--param",
            "learning_rate=grid(2e-3, 5e-3)",
            "--scheduler",
            "asha",
            "--max-concurrent",
            "1",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 trials" in printed
    best = json.loads((out / "best_config.json").read_text())
    assert set(best) == {"learning_rate"}
    trials = sorted((out / "tune").glob("ppo_trainable_*"))
    assert len(trials) == 2
    best_return = max(float(rows(t / "progress.csv")[-1]["episode_return_mean"]) for t in trials)
    assert best_return >= 475
    assert (out / "learning_curves.png").stat().st_size > 10_000
    checkpoint = next(line for line in printed.splitlines() if line.startswith("checkpoint:"))
    # The best trial's checkpoint is a run checkpoint: `learnerkit evaluate` reads it.
    assert (Path(checkpoint.split(":", 1)[1].strip()) / "run.json").is_file()


@pytest.mark.slow
@pytest.mark.ray
def test_population_based_training_clones_trials_that_keep_learning(tmp_path):
    summary = sweep(
        SweepConfig(
            train=TrainConfig(algorithm="ppo", env_id="CartPole-v1", stop_timesteps=24 * 512),
            space=parse_space(
                ["learning_rate=loguniform(1e-3, 3e-3)", "entropy_coeff=uniform(0, 0.005)"]
            ),
            num_samples=2,
            scheduler="pbt",
            perturbation_interval=8,
            max_concurrent=2,
            out_dir=str(tmp_path),
            verbose=0,
        )
    )
    assert summary.exploits >= 1
    restored = 0
    for trial in (tmp_path / "tune").glob("ppo_trainable_*"):
        results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        for result in results:
            # A perturbation takes effect at once, a cloned optimizer's rate notwithstanding.
            for name in ("learning_rate", "entropy_coeff"):
                assert result[f"learner/{name}"] == pytest.approx(result["config"][name])
        clones = [
            i
            for i, result in enumerate(results)
            if result["iterations_since_restore"] == 1 and result["training_iteration"] > 1
        ]
        for at in clones:
            restored += 1
            # It continues the donor's run (its counters), and learns on from there.
            assert results[at]["iteration"] == results[at]["training_iteration"]
        if clones:
            first = results[clones[0]]["episode_return_mean"]
            assert results[-1]["episode_return_mean"] > first
    assert restored >= 1
