"""Finding plugins: entry points only (a pip-installed package, nothing hard-coded), code
registration, and what happens when a plugin is broken, disabled, or claimed twice."""

from __future__ import annotations

import pytest
from conftest import CARTPOLE_OBS, TWO_ACTIONS, bc_loss, make_plugin, random_batch

import learnerkit
from learnerkit import (
    Columns,
    Learner,
    LearnerSpec,
    ModuleSpec,
    PluginError,
    UnknownAlgorithmError,
)

BROKEN = {
    "broken_import": ["broken_import", "failed to import", "learnerkit_dependency_that_is_not"],
    "bad_argument": ["bad_argument", "compute_loss", "advantage_estimate"],
    "misspelt_hook": ["misspelt_hook", "compile_result"],
    "future_api": ["future_api", "requires learnerkit API >=9.0", "pip install"],
    "old_import": ["old_import", "in_unit_interval", "'Removed'"],
}


def test_third_party_plugin_is_found_by_its_entry_point_and_trains(use_plugin_packages, framework):
    with pytest.raises(UnknownAlgorithmError):
        learnerkit.get_algorithm("echo")
    use_plugin_packages("learnerkit-echo")

    echo = learnerkit.get_algorithm("echo")
    assert (echo.package, echo.version) == ("learnerkit-echo", "0.3.1")
    spec = LearnerSpec(
        algorithm="echo", framework=framework, module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS)
    )
    learner = Learner(spec)
    learner.build()
    batch = random_batch(64)
    first = learner.update(batch, num_epochs=3)["default_policy"]
    for _ in range(8):
        last = learner.update(batch, num_epochs=3)["default_policy"]
    assert last["echo_loss"] < first["echo_loss"]
    assert learner.additional_update(timestep=123)["default_policy"]["echo_timestep"] == 123


def test_third_party_plugin_names_the_column_it_needs(use_plugin_packages):
    use_plugin_packages("learnerkit-echo")
    spec = LearnerSpec(algorithm="echo", module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS))
    learner = Learner(spec)
    learner.build()
    batch = {k: v for k, v in random_batch(8).items() if k != Columns.REWARDS}
    with pytest.raises(learnerkit.BatchError, match=r"lacks column 'rewards'.*echo needs it"):
        learner.update(batch)


def test_load_plugins_loads_every_installed_plugin(use_plugin_packages):
    use_plugin_packages("learnerkit-echo")
    loaded = learnerkit.load_plugins()
    assert {"bc", "echo"} <= set(loaded)
    assert loaded["echo"].plugin.__name__ == "learnerkit_echo"


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_load_plugins_raises_a_plugin_error_naming_the_broken_plugin(
    use_plugin_packages, monkeypatch, name
):
    use_plugin_packages("learnerkit-echo", "learnerkit-broken")
    others = sorted(set(BROKEN) - {name})
    monkeypatch.setenv("LEARNERKIT_DISABLE_PLUGINS", ",".join(others))
    with pytest.raises(PluginError) as excinfo:
        learnerkit.load_plugins()
    for fragment in BROKEN[name]:
        assert fragment in str(excinfo.value)


def test_broken_plugins_are_listed_with_their_errors_and_do_not_hide_the_others(
    use_plugin_packages,
):
    use_plugin_packages("learnerkit-echo", "learnerkit-broken")
    rows = {row.name: row for row in learnerkit.list_plugins()}
    assert rows["echo"].status == "ok" and rows["bc"].status == "ok"
    for name, fragments in BROKEN.items():
        assert rows[name].status == ("incompatible" if name == "future_api" else "error")
        assert rows[name].package == "learnerkit-broken"
        for fragment in fragments:
            assert fragment in rows[name].error
    # The strict path still works for the healthy ones.
    assert learnerkit.get_algorithm("echo").name == "echo"


def test_a_disabled_plugin_is_listed_as_disabled_and_cannot_be_used(
    use_plugin_packages, monkeypatch
):
    use_plugin_packages("learnerkit-echo")
    monkeypatch.setenv("LEARNERKIT_DISABLE_PLUGINS", "echo")
    rows = {row.name: row for row in learnerkit.list_plugins()}
    assert rows["echo"].status == "disabled"
    assert rows["bc"].status == "ok"
    assert "echo" not in learnerkit.load_plugins()
    with pytest.raises(UnknownAlgorithmError, match="disabled by LEARNERKIT_DISABLE_PLUGINS"):
        LearnerSpec(algorithm="echo", module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS))


def test_autoload_off_loads_no_entry_point_but_keeps_code_registrations(
    use_plugin_packages, monkeypatch, register
):
    use_plugin_packages("learnerkit-echo")
    register(make_plugin("mine", compute_loss=bc_loss))
    monkeypatch.setenv("LEARNERKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert [row.name for row in learnerkit.list_plugins()] == ["mine"]
    assert set(learnerkit.load_plugins()) == {"mine"}
    with pytest.raises(UnknownAlgorithmError, match=r"installed: \['mine'\]"):
        learnerkit.get_algorithm("bc")


def test_two_distributions_claiming_one_name_is_an_error_naming_both(use_plugin_packages):
    use_plugin_packages("learnerkit-echo", "learnerkit-echo-twin")
    with pytest.raises(PluginError, match="claimed by two distributions") as excinfo:
        learnerkit.get_algorithm("echo")
    assert "learnerkit-echo (learnerkit_echo)" in str(excinfo.value)
    assert "learnerkit-echo-twin (learnerkit_echo_twin)" in str(excinfo.value)
    rows = [row for row in learnerkit.list_plugins() if row.name == "echo"]
    assert rows and all(row.status == "error" for row in rows)
    assert learnerkit.get_algorithm("bc").name == "bc"


def test_an_algorithm_registered_in_code_is_usable_and_gone_after_unregistering():
    plugin = make_plugin("in_code", compute_loss=bc_loss)
    algorithm = learnerkit.register_algorithm(plugin)
    try:
        assert algorithm.package == "(registered in code)"
        assert learnerkit.get_algorithm("in_code").plugin is plugin
        row = next(r for r in learnerkit.list_plugins() if r.name == "in_code")
        assert (row.status, row.hooks) == ("ok", ("compute_loss",))
        LearnerSpec(algorithm="in_code", module_spec=ModuleSpec(CARTPOLE_OBS, TWO_ACTIONS))
    finally:
        learnerkit.unregister_algorithm("in_code")
    with pytest.raises(UnknownAlgorithmError, match="'in_code'"):
        learnerkit.get_algorithm("in_code")
    assert "in_code" not in {r.name for r in learnerkit.list_plugins()}


def test_registering_a_taken_name_needs_replace(register):
    with pytest.raises(PluginError, match=r"'bc' is already installed.*replace=True"):
        register(make_plugin("bc", compute_loss=bc_loss))
    shadow = make_plugin("bc", compute_loss=bc_loss)
    register(shadow, replace=True)
    assert learnerkit.get_algorithm("bc").plugin is shadow


def test_registering_a_plugin_without_an_algorithm_is_refused():
    plugin = make_plugin("x", compute_loss=bc_loss)
    del plugin.algorithm
    with pytest.raises(PluginError, match="declares no algorithm"):
        learnerkit.register_algorithm(plugin)


def test_registering_a_plugin_without_compute_loss_is_refused():
    def additional_update(timestep):
        return {}

    with pytest.raises(PluginError, match="implements no compute_loss hook"):
        learnerkit.register_algorithm(make_plugin("x", additional_update=additional_update))


def test_registering_a_plugin_with_an_argument_not_in_the_spec_names_it():
    def compute_loss(fwd_out, returns_to_go):
        return {}

    with pytest.raises(PluginError, match="breaks the plugin contract") as excinfo:
        learnerkit.register_algorithm(make_plugin("x", compute_loss=compute_loss))
    assert "returns_to_go" in str(excinfo.value)


def test_registering_a_plugin_with_a_misspelt_hook_names_the_hook():
    def compute_losses(fwd_out):
        return {}

    with pytest.raises(PluginError, match="compute_losses"):
        learnerkit.register_algorithm(
            make_plugin("x", compute_loss=bc_loss, compute_losses=compute_losses)
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hyperparameters": dict}, "attrs subclass of learnerkit.Hyperparameters"),
        ({"frameworks": ("jax",)}, r"non-empty subset of \['torch', 'tf'\]"),
        ({"frameworks": ()}, "non-empty subset"),
    ],
)
def test_registering_a_plugin_with_bad_metadata_says_what_is_wrong(kwargs, message):
    with pytest.raises(PluginError, match=message):
        learnerkit.register_algorithm(make_plugin("x", compute_loss=bc_loss, **kwargs))
