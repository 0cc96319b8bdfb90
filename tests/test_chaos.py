"""Chaos during `learnerkit train` (issue 21 §4): short seeded runs of the harness in
``bench/chaos.py`` (2 Ray env runners, 2 Ray learners), one per training loop: PPO (the
on-policy loop) with an env runner and a learner killed at once, and IMPALA (the
asynchronous loop) interrupted by SIGINT and resumed. Each must end with its stop reward,
counters that add up, every update applied once on every learner, and a final checkpoint
that loads. The harness's other scenarios, a runner or a learner killed alone, are parts
of the first; each is also tested on its own below the loops (test_ray_env_runners.py,
test_ray_learner_group.py, and IMPALA's runner killed mid-run in test_ray_training.py).
Every scenario with both algorithms, over seeds and longer runs: ``python bench/chaos.py``.
"""

from __future__ import annotations

import importlib.util

import pytest
from conftest import REPO_ROOT, end_ray_session

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _harness():
    spec = importlib.util.spec_from_file_location("chaos", REPO_ROOT / "bench" / "chaos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def chaos():
    """The harness, with a Ray of its own (4 logical CPUs: 2 learners and 2 runners),
    ended afterwards so that later tests start theirs as usual."""
    end_ray_session()
    yield _harness()
    end_ray_session()


@pytest.mark.parametrize(
    ("algorithm", "scenario", "seed"),
    [
        ("ppo", "both", 0),
        ("impala", "sigint", 0),
    ],
)
def test_a_run_under_chaos_ends_with_its_stop_reward_and_its_counters_add_up(
    chaos, tmp_path, algorithm, scenario, seed
):
    # One kill (or SIGINT), in the second iteration: it lands before the run ends.
    report = chaos.chaos_run(
        algorithm, scenario, seed, tmp_path, kills=1, stop_reward=40.0, gap=1, max_delay_s=0.5
    )
    assert report["kills"], report
