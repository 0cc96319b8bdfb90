"""Replay buffers: n-step rows equal a slow float64 reference across fragments and episode
ends, eviction is first in first out and never strands a row's next observation, dtypes
and memory, checkpoint state, and errors that say what to do. Sampling by priority is in
test_replay_buffers_priorities.py."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replay_references import (
    assert_rows_equal,
    buffer_rows,
    expected_rows,
    make_stream,
    stack_time_major,
)

from learnerkit import BatchError, Columns, ConfigError
from learnerkit.checkpoint import load, save
from learnerkit.replay import (
    MultiAgentReplayBuffer,
    PrioritizedReplayBuffer,
    ReplayColumns,
    UniformReplayBuffer,
    n_step_windows,
)
from learnerkit.rollouts import Rollout

GAMMAS = [0.0, 0.5, 0.9, 0.99, 1.0]


@st.composite
def scenarios(draw):
    """Streams of random episodes (terminated, truncated, both) cut into fragments."""
    return {
        "n": draw(st.sampled_from([1, 2, 3, 5])),
        "gamma": draw(st.sampled_from(GAMMAS)),
        "num_streams": draw(st.integers(1, 3)),
        "length": draw(st.integers(1, 40)),
        "end_prob": draw(st.sampled_from([0.05, 0.2, 0.5])),
        "max_fragment": draw(st.sampled_from([1, 3, 7, 40])),
        "seed": draw(st.integers(0, 2**16)),
        "prioritized": draw(st.booleans()),
    }


def make_buffer(prioritized: bool, capacity: int, n: int, gamma: float):
    if prioritized:
        return PrioritizedReplayBuffer(capacity, alpha=0.6, n_step=n, gamma=gamma)
    return UniformReplayBuffer(capacity, n_step=n, gamma=gamma)


def feed(buffer, streams, rng, max_fragment, time_major, check=None):
    """Add every stream in fragments of random lengths (all streams at once when
    ``time_major``, else one stream at a time in random order); returns the row id of each
    (stream, step). ``check(available, ids)`` runs after every add."""
    available = {s.index: 0 for s in streams}
    ids = {}
    length = len(streams[0])
    while any(available[s.index] < length for s in streams):
        if time_major:
            start = available[0]
            stop = min(length, start + int(rng.integers(1, max_fragment + 1)))
            base = buffer.num_added
            buffer.add_time_major(
                stack_time_major(streams, start, stop), streams=[("env", s.index) for s in streams]
            )
            for t in range(start, stop):
                for s in streams:
                    ids[(s.index, t)] = base + (t - start) * len(streams) + s.index
            for s in streams:
                available[s.index] = stop
        else:
            s = rng.choice([s for s in streams if available[s.index] < length])
            start = available[s.index]
            stop = min(length, start + int(rng.integers(1, max_fragment + 1)))
            base = buffer.num_added
            buffer.add(s.columns(start, stop), stream=("env", s.index))
            for t in range(start, stop):
                ids[(s.index, t)] = base + t - start
            available[s.index] = stop
        if check is not None:
            check(available, ids)
    return available, ids


# n-step rows against the reference ---------------------------------------------------------
@settings(deadline=None, max_examples=60)
@given(scenario=scenarios(), time_major=st.booleans())
def test_n_step_rows_equal_the_float64_reference_across_fragments(scenario, time_major):
    rng = np.random.default_rng(scenario["seed"])
    n, gamma = scenario["n"], scenario["gamma"]
    streams = [
        make_stream(i, scenario["length"], rng, scenario["end_prob"])
        for i in range(scenario["num_streams"])
    ]
    buffer = make_buffer(scenario["prioritized"], 1000, n, gamma)

    def check(available, ids):
        # Sampleable: exactly the rows whose windows are complete; the others wait.
        expected = expected_rows(streams, available, n, gamma)
        assert_rows_equal(buffer_rows(buffer), expected)
        assert len(buffer) == len(expected)
        assert buffer.num_pending == sum(available.values()) - len(expected)

    available, _ = feed(buffer, streams, rng, scenario["max_fragment"], time_major, check)
    buffer.flush()  # the streams end here: bootstrap from where they stopped
    assert_rows_equal(buffer_rows(buffer), expected_rows(streams, available, n, gamma, True))
    assert buffer.num_pending == 0


def test_a_terminated_window_never_bootstraps_and_a_truncated_one_does():
    def one_episode(end: str):
        buffer = UniformReplayBuffer(10, n_step=3, gamma=0.5)
        flags = {"terminateds": np.array([0, 1], bool), "truncateds": np.array([0, 0], bool)}
        if end == "truncated":
            flags = {"terminateds": np.array([0, 0], bool), "truncateds": np.array([0, 1], bool)}
        buffer.add(
            {
                "obs": np.array([[0.0], [1.0]]),
                "actions": np.array([0, 1]),
                "rewards": np.array([1.0, 2.0]),
                "new_obs": np.array([[1.0], [9.0]]),
                **flags,
            }
        )
        return buffer.rows(buffer.sampleable_indices())

    terminated, truncated = one_episode("terminated"), one_episode("truncated")
    np.testing.assert_allclose(terminated[Columns.REWARDS], [2.0, 2.0])
    np.testing.assert_allclose(terminated[ReplayColumns.DISCOUNTS], [0.0, 0.0])
    np.testing.assert_array_equal(terminated[Columns.TERMINATEDS], [True, True])
    np.testing.assert_allclose(truncated[ReplayColumns.DISCOUNTS], [0.25, 0.5])
    np.testing.assert_array_equal(truncated[Columns.TERMINATEDS], [False, False])
    np.testing.assert_array_equal(truncated[Columns.NEXT_OBS], [[9.0], [9.0]])  # the final obs


def test_n_step_windows_sum_rewards_up_to_the_episode_end():
    rewards = np.array([[1.0], [2.0], [4.0], [8.0]])
    ends = np.array([[False], [True], [False], [False]])
    windows = n_step_windows(rewards, ends, np.zeros_like(ends), n=3, gamma=0.5)
    np.testing.assert_allclose(windows.returns[:, 0], [2.0, 2.0, 8.0, 8.0])
    np.testing.assert_array_equal(windows.steps[:, 0], [2, 1, 2, 1])
    np.testing.assert_array_equal(windows.complete(3)[:, 0], [True, True, False, False])
    np.testing.assert_allclose(windows.discounts(0.5)[:, 0], [0.0, 0.0, 0.25, 0.5])


def test_a_rollout_is_added_as_one_stream_per_env_continued_by_the_next_fragment():
    rng = np.random.default_rng(0)
    streams = [make_stream(i, 12, rng, 0.2) for i in range(3)]
    buffer = UniformReplayBuffer(100, n_step=3, gamma=0.9)
    for start, stop in ((0, 5), (5, 12)):
        columns = stack_time_major(streams, start, stop)
        zeros = np.zeros(columns[Columns.REWARDS].shape, np.float32)
        rollout = Rollout(
            obs=columns[Columns.OBS],
            next_obs=columns[Columns.NEXT_OBS],
            actions=columns[Columns.ACTIONS],
            rewards=columns[Columns.REWARDS],
            terminateds=columns[Columns.TERMINATEDS],
            truncateds=columns[Columns.TRUNCATEDS],
            vf_preds=zeros,
            action_logp=zeros,
            action_dist_inputs=zeros[..., None],
            next_values=zeros,
        )
        buffer.add_rollout(rollout, runner_index=4)
    available = dict.fromkeys(range(3), 12)
    assert_rows_equal(buffer_rows(buffer), expected_rows(streams, available, 3, 0.9))
    buffer.flush([(4, 0)])  # runner 4's env 0 will not continue; the others may
    expected = expected_rows(streams[1:], available, 3, 0.9)
    expected.update(expected_rows(streams[:1], available, 3, 0.9, flushed=True))
    assert_rows_equal(buffer_rows(buffer), expected)


# Capacity and eviction ---------------------------------------------------------------------
@settings(deadline=None, max_examples=40)
@given(scenario=scenarios(), capacity=st.integers(6, 40), time_major=st.booleans())
def test_eviction_drops_the_oldest_rows_and_never_a_live_rows_next_observation(
    scenario, capacity, time_major
):
    rng = np.random.default_rng(scenario["seed"])
    n, gamma = scenario["n"], scenario["gamma"]
    streams = [
        make_stream(i, 3 * scenario["length"], rng, scenario["end_prob"])
        for i in range(scenario["num_streams"])
    ]
    buffer = make_buffer(scenario["prioritized"], capacity, n, gamma)

    def check(available, ids):
        # Live rows are the last `capacity` added; each still reads the right next obs.
        assert len(buffer) + buffer.num_pending <= capacity
        first = buffer.num_added - capacity
        assert_rows_equal(
            buffer_rows(buffer), expected_rows(streams, available, n, gamma, alive=(ids, first))
        )

    available, ids = feed(buffer, streams, rng, scenario["max_fragment"], time_major, check)
    buffer.flush()
    first = buffer.num_added - capacity
    expected = expected_rows(streams, available, n, gamma, True, alive=(ids, first))
    assert_rows_equal(buffer_rows(buffer), expected)


def test_a_fragment_longer_than_the_capacity_keeps_its_last_rows():
    rng = np.random.default_rng(1)
    stream = make_stream(0, 50, rng, 0.1)
    buffer = UniformReplayBuffer(8, n_step=2, gamma=0.9)
    buffer.add(stream.columns(0, 50), stream=0)
    steps = sorted(t for _, t in buffer_rows(buffer))
    assert steps == [t for t in range(42, 50) if (0, t) in expected_rows([stream], {0: 50}, 2, 0.9)]


@pytest.mark.parametrize("end_prob", [0.7, 2.0])
@pytest.mark.parametrize("capacity", [15, 17, 33, 70])
def test_observations_stored_apart_go_only_with_their_rows(end_prob, capacity):
    # Many episode ends: many next observations are stored apart, and their store fills,
    # wraps and grows; each row still reads its own, and memory stops growing.
    rng = np.random.default_rng(2)
    streams = [make_stream(i, 400, rng, end_prob) for i in range(2)]
    buffer = UniformReplayBuffer(capacity, n_step=3, gamma=0.9)
    sizes = []

    def check(available, ids):
        first = buffer.num_added - capacity
        expected = expected_rows(streams, available, 3, 0.9, alive=(ids, first))
        assert_rows_equal(buffer_rows(buffer), expected)
        sizes.append(buffer.nbytes)

    feed(buffer, streams, rng, 7, time_major=False, check=check)
    # Rows, plus observations apart for at most about two rows' worth: bounded however
    # long it runs.
    assert max(sizes) <= capacity * (3 * 8 + 8 + 4 + 4 + 1 + 8 + 1) + 4 * capacity * (3 * 8 + 8)


def test_uint8_observations_stay_uint8_and_are_stored_once():
    rng = np.random.default_rng(3)
    capacity, shape, length = 2000, (16, 16, 4), 2500
    obs = rng.integers(0, 256, size=(length + 1, *shape), dtype=np.uint8)
    ends = np.zeros(length, bool)
    ends[rng.choice(length, 15, replace=False)] = True
    buffer = UniformReplayBuffer(capacity, n_step=3, gamma=0.99)
    actions = rng.normal(size=(length, 2)).astype(np.float32)
    for start in range(0, length, 50):
        part = slice(start, start + 50)
        buffer.add(
            {
                "obs": obs[part],
                "actions": actions[part],
                "rewards": np.ones(50, np.float32),
                "terminateds": ends[part],
                "truncateds": np.zeros(50, bool),
                "new_obs": obs[start + 1 : start + 51],
            },
            stream=0,
        )
    batch = buffer.sample(64, np.random.default_rng(0))
    assert batch[Columns.OBS].dtype == batch[Columns.NEXT_OBS].dtype == np.uint8
    assert batch[Columns.ACTIONS].dtype == np.float32 and batch[Columns.ACTIONS].shape == (64, 2)
    # A naive buffer stores obs and new_obs apart, plus an action, a reward, a flag.
    naive = capacity * (2 * obs[0].nbytes + actions[0].nbytes + 4 + 1)
    assert 0.45 < buffer.nbytes / naive < 0.55


# State for checkpoints ---------------------------------------------------------------------
@pytest.mark.parametrize("prioritized", [False, True])
def test_state_round_trip_samples_the_same_rows_and_completes_the_same_windows(
    prioritized, tmp_path
):
    rng = np.random.default_rng(4)
    streams = [make_stream(i, 60, rng, 0.1) for i in range(3)]
    buffer = make_buffer(prioritized, 100, 3, 0.9)
    for start in range(0, 40, 8):
        buffer.add_time_major(
            stack_time_major(streams, start, start + 8), streams=[("env", i) for i in range(3)]
        )
        if prioritized:
            batch = buffer.sample(16, rng, beta=0.5)
            buffer.update_priorities(batch[ReplayColumns.BATCH_INDEXES], rng.normal(size=16))
    assert buffer.num_pending > 0
    save(tmp_path, {"replay": buffer.get_state()})  # numpy arrays and JSON values only
    restored = make_buffer(prioritized, 100, 3, 0.9)
    restored.set_state(load(tmp_path)["replay"])

    def same(a, b):
        kwargs = {"beta": 0.4} if prioritized else {}
        x = a.sample(32, np.random.default_rng(7), **kwargs)
        y = b.sample(32, np.random.default_rng(7), **kwargs)
        assert set(x) == set(y)
        for name in x:
            np.testing.assert_array_equal(x[name], y[name])
            assert x[name].dtype == y[name].dtype
        assert (len(a), a.num_pending, a.nbytes) == (len(b), b.num_pending, b.nbytes)

    same(buffer, restored)
    for b in (buffer, restored):  # the pending windows continue alike
        b.add_time_major(stack_time_major(streams, 40, 60), streams=[("env", i) for i in range(3)])
    same(buffer, restored)
    for b in (buffer, restored):
        b.flush()
    same(buffer, restored)


def test_a_multi_agent_buffer_keeps_one_buffer_per_module(tmp_path):
    rng = np.random.default_rng(5)
    buffers = MultiAgentReplayBuffer(lambda module_id: UniformReplayBuffer(50, n_step=2))
    for module_id in ("a", "b"):
        stream = make_stream(0, 20, rng, 0.1)
        buffers.add(module_id, stream.columns(0, 20), stream=(0, 0, f"agent_{module_id}"))
    batch = buffers.sample(8, np.random.default_rng(0))
    assert sorted(batch) == ["a", "b"] and batch["a"].count == 8
    restored = MultiAgentReplayBuffer(lambda module_id: UniformReplayBuffer(50, n_step=2))
    save(tmp_path, buffers.get_state())
    restored.set_state(load(tmp_path))
    again = restored.sample(8, np.random.default_rng(0))
    np.testing.assert_array_equal(again["b"][Columns.OBS], batch["b"][Columns.OBS])


# Errors say what and how to fix it -----------------------------------------------------------
def test_a_fragment_missing_a_column_is_refused_naming_it():
    buffer = UniformReplayBuffer(10)
    columns = make_stream(0, 5, np.random.default_rng(0), 0.1).columns(0, 5)
    del columns[Columns.NEXT_OBS]
    with pytest.raises(BatchError, match=r"lack column\(s\) \['new_obs'\].*Rollout.next_obs"):
        buffer.add(columns)
    assert buffer.num_added == 0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: UniformReplayBuffer(3, n_step=3), "capacity 3 does not exceed the n-step"),
        (lambda: UniformReplayBuffer(10, n_step=0), "n_step is 0; .* at least 1"),
        (lambda: UniformReplayBuffer(10, gamma=1.5), "gamma is 1.5"),
        (lambda: PrioritizedReplayBuffer(10, alpha=-1), "alpha is -1"),
        (lambda: PrioritizedReplayBuffer(10, epsilon=0), "epsilon is 0; it must be positive"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_rows_of_another_shape_or_an_unfit_dtype_are_refused():
    buffer = UniformReplayBuffer(10)
    stream = make_stream(0, 5, np.random.default_rng(0), 0.1)
    buffer.add(stream.columns(0, 3))
    wide = {**stream.columns(3, 5), "obs": np.zeros((2, 4)), "new_obs": np.zeros((2, 4))}
    with pytest.raises(BatchError, match=r"rows of shape \(4,\), but this buffer stores \(3,\)"):
        buffer.add(wide)
    floats = {**stream.columns(3, 5), "actions": np.zeros(2)}
    with pytest.raises(BatchError, match="dtype float64, which this buffer's int64"):
        buffer.add(floats)
    with pytest.raises(BatchError, match="one distinct key per column"):
        buffer.add_time_major(stack_time_major([stream, stream], 0, 2), streams=[0, 0])


def test_sampling_before_any_row_is_complete_says_so():
    buffer = UniformReplayBuffer(10, n_step=3)
    buffer.add(make_stream(0, 2, np.random.default_rng(0), 0.0).columns(0, 2))
    with pytest.raises(
        BatchError, match=r"nothing to sample: no row is sampleable yet \(2 pending"
    ):
        buffer.sample(4, np.random.default_rng(0))
    with pytest.raises(ConfigError, match=r"numpy\.random\.Generator"):
        buffer.sample(4, 0)


def test_restoring_state_into_another_kind_of_buffer_is_refused():
    with pytest.raises(ConfigError, match="restore it into a 'uniform' buffer"):
        PrioritizedReplayBuffer(10).set_state(UniformReplayBuffer(10).get_state())
    with pytest.raises(ConfigError, match="build the buffer with the saved settings"):
        UniformReplayBuffer(20).set_state(UniformReplayBuffer(10).get_state())


def test_the_docs_example_runs_as_written():
    page = Path(__file__).parent.parent / "docs" / "guides" / "replay-buffers.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    example = next(b for b in blocks if "PrioritizedReplayBuffer(" in b)
    exec(compile(example, str(page), "exec"), {})


def test_the_package_imports_no_framework_ray_or_loop():
    from test_layers import imports_of

    folder = Path(__file__).parent.parent / "learnerkit" / "replay"
    heavy = ("torch", "tensorflow", "ray", "learnerkit.loops", "learnerkit.backends")
    found = {
        (path.name, name)
        for path in folder.glob("*.py")
        for name in imports_of(path)
        if name.split(".")[0] in heavy or any(name.startswith(h) for h in heavy)
    }
    assert found == set()
