"""Checkpoints: no pickle, atomic writes, and a clear CheckpointError for a checkpoint of
another algorithm, framework or shape, or a truncated/corrupt file."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

from learnerkit import CheckpointError, Learner, LearnerSpec, ModuleSpec

MODULE = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)


def build(algorithm="bc", framework="torch", module_spec=MODULE) -> Learner:
    learner = Learner(
        LearnerSpec(algorithm=algorithm, framework=framework, module_spec=module_spec)
    )
    learner.build()
    return learner


def trained(framework="torch", steps=3) -> Learner:
    learner = build(framework=framework)
    for seed in range(steps):
        learner.update(random_batch(32, seed=seed))
    return learner


def flat(tree, prefix=""):
    """Nested state as {path: value}, to compare two states leaf by leaf."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flat(v, f"{prefix}/{k}"))
        return out
    if isinstance(tree, list):
        out = {}
        for i, v in enumerate(tree):
            out.update(flat(v, f"{prefix}[{i}]"))
        return out
    return {prefix: tree}


def assert_same_state(a, b):
    # Keras numbers optimizer names per process ("adam_1"); the name is not state.
    fa, fb = ({k: v for k, v in flat(s).items() if not k.endswith("/name")} for s in (a, b))
    assert set(fa) == set(fb)
    for key in fa:
        if isinstance(fa[key], np.ndarray) or isinstance(fb[key], np.ndarray):
            np.testing.assert_array_equal(np.asarray(fa[key]), np.asarray(fb[key]), err_msg=key)
        else:
            assert fa[key] == fb[key], key


def test_a_saved_state_loads_into_a_new_learner_with_weights_and_optimizer(tmp_path, framework):
    source = trained(framework)
    source.save_state(tmp_path / "ckpt")
    target = build(framework=framework)
    target.load_state(tmp_path / "ckpt")
    assert_same_state(target.get_state(), source.get_state())


def test_a_checkpoint_is_plain_arrays_that_load_without_pickle(tmp_path, framework):
    trained(framework).save_state(tmp_path)
    assert os.listdir(tmp_path) == ["learner_state.npz"]  # one file, no temporary one left
    path = tmp_path / "learner_state.npz"
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    assert arrays and all(a.dtype != object for a in arrays.values())
    with zipfile.ZipFile(path) as archive:  # and nothing in it is a pickle
        assert all(archive.read(n)[:6] == b"\x93NUMPY" for n in archive.namelist())


def test_a_crash_while_writing_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    first = trained(steps=1)
    first.save_state(tmp_path)
    saved = first.get_state()
    first.update(random_batch(32, seed=7))

    def crash_half_way(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(np, "savez", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        first.save_state(tmp_path)
    monkeypatch.undo()

    assert os.listdir(tmp_path) == ["learner_state.npz"]
    fresh = build()
    fresh.load_state(tmp_path)
    assert_same_state(fresh.get_state(), saved)


def test_a_failed_rename_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    learner = trained(steps=1)
    learner.save_state(tmp_path)
    saved = learner.get_state()
    learner.update(random_batch(32, seed=7))

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        learner.save_state(tmp_path)
    monkeypatch.undo()

    assert os.listdir(tmp_path) == ["learner_state.npz"]
    fresh = build()
    fresh.load_state(tmp_path)
    assert_same_state(fresh.get_state(), saved)


def test_a_checkpoint_of_another_algorithm_is_refused(tmp_path, register):
    register(make_plugin("other", compute_loss=bc_loss))
    build("other").save_state(tmp_path)
    with pytest.raises(
        CheckpointError, match="written by algorithm 'other'; this learner runs 'bc'"
    ):
        build("bc").load_state(tmp_path)


def test_a_checkpoint_of_another_framework_is_refused(tmp_path, framework):
    other = "tf" if framework == "torch" else "torch"
    build(framework=framework).save_state(tmp_path)
    with pytest.raises(CheckpointError, match=f"written by framework '{framework}'"):
        build(framework=other).load_state(tmp_path)


def test_a_checkpoint_of_another_shape_is_refused_naming_the_weight(tmp_path, framework):
    wide = ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS, model_config={"hiddens": [32, 32]})
    build(framework=framework, module_spec=wide).save_state(tmp_path)
    learner = build(framework=framework)
    before = learner.get_module_state()
    with pytest.raises(CheckpointError, match=r"has shape .* this module needs") as excinfo:
        learner.load_state(tmp_path)
    assert "model_config" in str(excinfo.value)
    assert_same_state(learner.get_module_state(), before)  # nothing half-loaded


def test_a_checkpoint_with_other_module_ids_is_refused(tmp_path):
    build(module_spec={"a": MODULE, "b": MODULE}).save_state(tmp_path)
    with pytest.raises(CheckpointError, match=r"has modules \['a', 'b'\]; this learner has"):
        build().load_state(tmp_path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],
        lambda data: data[:100],
        lambda data: b"not a checkpoint at all",
        lambda data: b"",
    ],
    ids=["truncated", "header-only", "garbage", "empty"],
)
def test_a_damaged_checkpoint_file_is_a_checkpoint_error_naming_the_file(tmp_path, damage):
    trained(steps=1).save_state(tmp_path)
    path = tmp_path / "learner_state.npz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match="corrupt or truncated") as excinfo:
        build().load_state(tmp_path)
    assert str(path) in str(excinfo.value)


def test_a_missing_checkpoint_says_what_is_missing(tmp_path):
    with pytest.raises(CheckpointError, match=r"learner_state\.npz is missing"):
        build().load_state(tmp_path / "nowhere")


def test_a_checkpoint_of_another_format_version_is_refused(tmp_path):
    build().save_state(tmp_path)
    # The file is an .npz of arrays, its JSON tree the uint8 array "__tree__" (no pickle).
    path = tmp_path / "learner_state.npz"
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    tree = json.loads(arrays["__tree__"].tobytes())
    assert tree["format_version"] == 1
    tree["format_version"] = 99
    arrays["__tree__"] = np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="format version 99"):
        build().load_state(tmp_path)


def test_an_update_after_loading_a_state_shuffles_as_the_uninterrupted_one(framework):
    # The shuffle generator is part of the state (issue 21): without it, the resumed
    # update's minibatches came in another order and its weights differed by ~3e-2.
    uninterrupted = trained(framework, steps=1)
    state = uninterrupted.get_state()
    uninterrupted.update(random_batch(64, seed=5), minibatch_size=8, num_epochs=2)
    resumed = build(framework=framework)
    resumed.update(random_batch(32, seed=9), num_epochs=3)  # its generator moves on
    resumed.set_state(state)
    resumed.update(random_batch(64, seed=5), minibatch_size=8, num_epochs=2)
    for name, value in uninterrupted.get_module_state()["default_policy"].items():
        assert resumed.get_module_state()["default_policy"][name].tobytes() == value.tobytes()
