"""Training on a GPU: torch Learners of every built-in algorithm on ``cuda``, their state
moved to and from CPU learners, ``learnerkit train --num-gpus-per-learner 1``, and Ray
learners with a GPU each and sharing one.

Skipped where torch sees no GPU (CI has none): these run on a machine with one, by hand
(docs/guides/gpus.md). Each failure message says what differed and by how much. A learner
that asks for a GPU where there is none is tested in test_learner_group_local.py.
"""

from __future__ import annotations

import json
import os
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
from conftest import run_learnerkit

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("torch sees no GPU (torch.cuda.is_available() is False)", allow_module_level=True)

from learnerkit import (  # noqa: E402  (after the module-level skip)
    Columns,
    Learner,
    LearnerGroup,
    LearnerSpec,
    ModuleSpec,
    SampleBatch,
    ScalingConfig,
    get_algorithm,
)
from learnerkit.loops import TrainConfig, Trainer  # noqa: E402

ALGORITHMS = ["ppo", "impala", "appo", "bc"]
SEQUENCES = ("impala", "appo")  # V-trace: trained on whole fragments of T steps
MODULE_ID = "default_policy"
OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACTIONS = gym.spaces.Discrete(2)
T, NUM_FRAGMENTS = 8, 4  # whole fragments for IMPALA and APPO (rollout_fragment_length=T)
# CPU and CUDA kernels sum in different orders; one Adam step on the same weights agrees
# to about 1e-6. A wrong device move, a lost optimizer state or a skipped step is far off.
RTOL, ATOL = 1e-4, 1e-5


def spec(algorithm: str, **scaling) -> LearnerSpec:
    hps_class = get_algorithm(algorithm).hyperparameters
    hps = hps_class(rollout_fragment_length=T) if algorithm in SEQUENCES else hps_class()
    return LearnerSpec(
        algorithm=algorithm,
        module_spec=ModuleSpec(OBS, ACTIONS),
        hyperparameters=hps,
        scaling=ScalingConfig(**scaling),
    )


def fragments(seed: int) -> SampleBatch:
    """Every column any of the four algorithms reads, as NUM_FRAGMENTS fragments of T steps
    (one episode ends inside the first)."""
    rng = np.random.default_rng(seed)
    n = T * NUM_FRAGMENTS
    logits = rng.normal(0, 0.5, (n, 2)).astype(np.float32)
    actions = rng.integers(0, 2, n)
    logp = logits[np.arange(n), actions] - np.log(np.exp(logits).sum(-1))
    terminated = np.zeros(n, bool)
    terminated[3] = True
    return SampleBatch(
        {
            Columns.OBS: rng.uniform(-1, 1, (n, 4)).astype(np.float32),
            Columns.NEXT_OBS: rng.uniform(-1, 1, (n, 4)).astype(np.float32),
            Columns.ACTIONS: actions,
            Columns.REWARDS: rng.normal(0.5, 1, n).astype(np.float32),
            Columns.TERMINATEDS: terminated,
            Columns.TRUNCATEDS: np.zeros(n, bool),
            Columns.ACTION_DIST_INPUTS: logits,
            Columns.ACTION_LOGP: logp.astype(np.float32),
            Columns.VF_PREDS: rng.normal(0, 1, n).astype(np.float32),
            Columns.ADVANTAGES: rng.normal(0, 1, n).astype(np.float32),
            Columns.VALUE_TARGETS: rng.normal(0, 1, n).astype(np.float32),
        }
    )


def built(algorithm: str, device: str | None) -> Learner:
    learner = Learner(spec(algorithm), device=device)
    learner.build()
    return learner


def train(learner: Learner, batch: SampleBatch, **kwargs) -> dict:
    """One update (IMPALA and APPO on whole fragments) and the non-gradient update that
    follows it in the loops (APPO moves its target network there)."""
    results = learner.update(batch, sequence_length=T, **kwargs)[MODULE_ID]
    learner.additional_update(timestep=T * NUM_FRAGMENTS)
    return results


def devices_of(learner: Learner) -> dict[str, set[str]]:
    """The device types of the module's parameters, its target network's (if any), and
    every optimizer-state tensor (but fused Adam's ``step`` counters, which torch may keep
    on the CPU)."""
    module = learner.module[MODULE_ID]
    found = {"module": {p.device.type for p in module.parameters()}}
    if learner.algorithm.target_network:
        target = learner.target_module(MODULE_ID)
        found["target"] = {p.device.type for p in target.parameters()}
    found["optimizer"] = {
        value.device.type
        for optimizer in learner.optimizers(MODULE_ID).values()
        for state in optimizer.state.values()
        for key, value in state.items()
        if torch.is_tensor(value) and key != "step"
    }
    return found


def tensors_in(value, path: str = "state") -> list[str]:
    """Where ``value`` (a nested state) holds a torch tensor instead of numpy or a number."""
    if torch.is_tensor(value):
        return [f"{path}: {value.device} tensor"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in tensors_in(v, f"{path}[{k!r}]")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in tensors_in(v, f"{path}[{i}]")]
    return []


def differences(a, b, path: str = "state") -> list[str]:
    """Where two states (``get_state``) differ beyond RTOL/ATOL, with the largest gap."""
    if isinstance(a, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(a)} vs {sorted(b)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}[{k!r}]")]
    if isinstance(a, (list, tuple)):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if x.shape != y.shape:
            return [f"{path}: shape {x.shape} vs {y.shape}"]
        if not np.allclose(x, y, rtol=RTOL, atol=ATOL):
            gap = np.abs(x - y)
            where = np.unravel_index(gap.argmax(), gap.shape)
            return [f"{path}: max |diff| {gap.max():.3g} at {where} of {x.shape}"]
        return []
    if isinstance(a, float) or isinstance(b, float):
        return [] if np.isclose(a, b, rtol=RTOL, atol=ATOL) else [f"{path}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def assert_same_next_update(a: Learner, b: Learner, batch: SampleBatch) -> None:
    """``a`` and ``b`` hold the same state, and one more update (the whole batch in one
    minibatch, unshuffled: the learners' shuffling generators are not part of the state)
    leaves them with the same results and state."""
    state_a, state_b = a.get_state(), b.get_state()
    assert not differences(state_a, state_b), differences(state_a, state_b)
    results_a = train(a, batch, shuffle=False)
    results_b = train(b, batch, shuffle=False)
    assert not differences(results_a, results_b), (results_a, results_b)
    after = differences(a.get_state(), b.get_state())
    assert not after, f"after one more update on {a.backend.device} and {b.backend.device}: {after}"


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_torch_learner_trains_on_the_gpu_and_its_state_moves_to_the_cpu_and_back(
    algorithm, tmp_path
):
    gpu = built(algorithm, "cuda:0")
    results = train(gpu, fragments(seed=0), minibatch_size=2 * T)
    assert np.isfinite(results["total_loss"]), results
    assert results["num_samples"] == T * NUM_FRAGMENTS, results
    found = devices_of(gpu)
    assert all(kinds == {"cuda"} for kinds in found.values()), found

    state = gpu.get_state()
    assert not tensors_in(state), tensors_in(state)
    assert all(isinstance(w, np.ndarray) for w in state["modules"][MODULE_ID].values())

    # GPU checkpoint -> CPU learner: the same weights, and the same next update.
    gpu.save_state(tmp_path / "from_gpu")
    cpu = built(algorithm, None)
    cpu.load_state(tmp_path / "from_gpu")
    assert devices_of(cpu)["module"] == {"cpu"}
    assert_same_next_update(gpu, cpu, fragments(seed=1))

    # CPU checkpoint -> a fresh GPU learner: its optimizer state lands on the GPU too.
    train(cpu, fragments(seed=2))
    cpu.save_state(tmp_path / "from_cpu")
    gpu_again = built(algorithm, "cuda:0")
    gpu_again.load_state(tmp_path / "from_cpu")
    found = devices_of(gpu_again)
    assert all(kinds == {"cuda"} for kinds in found.values()), found
    assert_same_next_update(cpu, gpu_again, fragments(seed=3))


@pytest.mark.slow
def test_train_with_num_gpus_per_learner_trains_ppo_on_the_gpu(tmp_path):
    """The flag reaches the learner (checked in process), and a short CLI run trains."""
    config = TrainConfig(num_gpus_per_learner=1, out_dir=str(tmp_path / "built"), progress=False)
    trainer = Trainer(config)
    try:
        devices = trainer.group.foreach_learner(
            lambda learner: {p.device.type for p in learner.module[MODULE_ID].parameters()}
        )
    finally:
        trainer.close()
    assert devices == [{"cuda"}], devices

    out = tmp_path / "run"
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"rollout_fragment_length": 32, "num_epochs": 2}))
    args = ["train", "ppo", "--env", "CartPole-v1", "--num-gpus-per-learner", "1"]
    args += ["--num-env-runners", "0", "--stop-timesteps", "1024", "--config", str(small)]
    result = run_learnerkit("-m", "learnerkit", *args, "--out", str(out), "--quiet")
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["timesteps_total"] >= 1024, summary
    assert (out / "checkpoint").is_dir(), sorted(p.name for p in out.iterdir())


# Ray learners -------------------------------------------------------------------------------
def learner_devices(group: LearnerGroup) -> list[str]:
    return group.foreach_learner(
        lambda learner: str(next(learner.module[MODULE_ID].parameters()).device)
    )


def assert_identical_weights(group: LearnerGroup) -> None:
    weights = group.foreach_learner(lambda learner: learner.get_module_state()[MODULE_ID])
    unequal = [
        f"learner {rank}: {name} (max |diff| {np.abs(w[name] - weights[0][name]).max():.3g})"
        for rank, w in enumerate(weights[1:], start=1)
        for name in w
        if not np.array_equal(w[name], weights[0][name])
    ]
    assert not unequal, unequal


def ray_group(num_learners: int, num_gpus_per_learner: float) -> LearnerGroup:
    pytest.importorskip("ray")
    return LearnerGroup(
        spec(
            "bc",
            num_learners=num_learners,
            num_cpus_per_learner=1,
            num_gpus_per_learner=num_gpus_per_learner,
        )
    )


@pytest.mark.ray
@pytest.mark.slow
def test_a_ray_learner_with_a_gpu_of_its_own_trains_on_it():
    """One learner, one GPU: the actor trains on the GPU Ray assigned it (the NCCL setting,
    though a lone learner forms no process group)."""
    group = ray_group(1, 1)
    try:
        assert learner_devices(group) == ["cuda:0"]
        before = group.get_weights()[MODULE_ID]
        for seed in range(3):
            results = group.update(fragments(seed), minibatch_size=2 * T)[MODULE_ID]
            assert np.isfinite(results["total_loss"]), results
        state = group.get_state()
        assert not tensors_in(state), tensors_in(state)
        after = state["modules"][MODULE_ID]
        assert any(not np.array_equal(before[k], after[k]) for k in after), "nothing trained"
    finally:
        group.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_two_ray_learners_sharing_a_gpu_stay_identical_and_match_one_learner():
    """Two learners on half a GPU each all-reduce their CUDA gradients through gloo: their
    weights stay bitwise identical, and equal (to rounding) those of one GPU learner
    trained on the whole batch (BC's mean loss over equal shards averages to the whole
    batch's)."""
    group = ray_group(2, 0.5)
    local = built("bc", "cuda:0")
    try:
        assert learner_devices(group) == ["cuda:0", "cuda:0"]
        group.set_state(local.get_state())
        for seed in range(3):
            batch = fragments(seed)
            group.update(batch)  # one minibatch: each learner's whole shard
            local.update(batch)
            assert_identical_weights(group)
        gaps = differences(group.get_weights()[MODULE_ID], local.get_module_state()[MODULE_ID])
        assert not gaps, f"two learners sharing a GPU vs one learner: {gaps}"
    finally:
        group.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_a_ppo_group_on_a_gpu_prints_no_torch_warning_about_unused_parameters(capfd):
    """Learners on GPUs train through DDP, asked to find unused parameters (a loss may leave
    parts of a module out), and torch advises against that from C++ once per learner when
    it finds none: learnerkit filters that line out of the learners' stderr (issue 21)."""
    group = LearnerGroup(
        spec("ppo", num_learners=2, num_cpus_per_learner=1, num_gpus_per_learner=0.5)
    )
    try:
        group.update(fragments(0))
        group.update(fragments(1))
        # A line on each learner's stderr after its updates; Ray forwards the learners'
        # output to this console a moment later, merging lines that are alike, so each
        # learner's is its own (its pid spelt in letters).
        group.foreach_learner(
            lambda learner: print(
                "learnerkit-test done by " + "".join(chr(97 + int(d)) for d in str(os.getpid())),
                file=sys.stderr,
                flush=True,
            )
        )
        deadline, seen = time.monotonic() + 20, ""
        while seen.count("learnerkit-test done by") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            seen += "".join(capfd.readouterr())
    finally:
        group.shutdown()
    assert seen.count("learnerkit-test done by") == 2
    assert "find_unused_parameters" not in seen


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs a GPU per learner")
def test_two_ray_learners_with_a_gpu_each_all_reduce_through_nccl_and_stay_identical():
    group = ray_group(2, 1)
    try:
        devices = learner_devices(group)
        assert all(d.startswith("cuda") for d in devices), devices
        for seed in range(3):
            group.update(fragments(seed), minibatch_size=2 * T)
            assert_identical_weights(group)
    finally:
        group.shutdown()
