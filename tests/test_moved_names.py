"""Names that moved in issue 17 still work at their old place for a release: the ones
plugins import warn with a DeprecationWarning naming the new place; re-exported tables
and settings are the same objects. The test run filters DeprecationWarning, so each test
records warnings itself."""

from __future__ import annotations

import warnings

import pytest
from conftest import make_plugin

import learnerkit
from learnerkit import coefficients, fields
from learnerkit.errors import LearnerkitDeprecationWarning
from learnerkit.testing import reset_plugins


@pytest.mark.parametrize("name", ["schedule_value", "scheduled", "adapted_kl_coeff"])
def test_a_coefficient_still_imports_from_fields_with_a_warning(name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = getattr(fields, name)
    assert value is getattr(coefficients, name)
    assert [w.category for w in caught] == [LearnerkitDeprecationWarning]
    assert f"learnerkit.coefficients.{name}" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the importer, not at learnerkit


def test_from_fields_import_of_a_coefficient_works_and_warns():
    with pytest.warns(DeprecationWarning, match="learnerkit.coefficients.adapted_kl_coeff"):
        from learnerkit.fields import adapted_kl_coeff
    assert adapted_kl_coeff(1.0, 1.0, 0.1) == 1.5


def test_the_validators_stay_in_fields_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from learnerkit import schedule_value  # the public front is unchanged
        from learnerkit.fields import non_negative_schedule, positive  # noqa: F401
    assert schedule_value is coefficients.schedule_value
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        fields.nonsense  # noqa: B018


def test_learner_spec_still_imports_from_specs_with_a_warning():
    with pytest.warns(
        DeprecationWarning,
        match="learnerkit.specs.LearnerSpec is deprecated: import LearnerSpec from learnerkit",
    ):
        from learnerkit.specs import LearnerSpec
    assert LearnerSpec is learnerkit.LearnerSpec


def test_the_loops_reexport_their_declaration_and_settings():
    from learnerkit import loops, settings, training_loops
    from learnerkit.loops import contract
    from learnerkit.loops import settings as loop_settings

    assert loops.LoopInfo is training_loops.LoopInfo is contract.LoopInfo is learnerkit.LoopInfo
    for name in ("SamplingSettings", "OnPolicySettings", "AsyncSettings", "OfflineSettings"):
        assert getattr(loop_settings, name) is getattr(settings, name) is getattr(learnerkit, name)


def test_reset_plugins_forgets_algorithms_registered_in_code():
    learnerkit.register_algorithm(make_plugin("forgotten", compute_loss=lambda: None))
    assert "forgotten" in {p.name for p in learnerkit.list_plugins()}
    reset_plugins()
    assert "forgotten" not in {p.name for p in learnerkit.list_plugins()}
    with pytest.raises(learnerkit.UnknownAlgorithmError):
        learnerkit.get_algorithm("forgotten")


@pytest.mark.parametrize("where", ["learnerkit.training_loops", "learnerkit.loops"])
def test_the_table_of_loops_still_reads_with_a_warning_naming_the_registry(where):
    # Once a fixed table of the built-in loops; now the installed loops (issue 18).
    import importlib

    module = importlib.import_module(where)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = module.TRAINING_LOOPS
    assert {"on_policy", "async", "offline"} <= set(table)
    assert table["offline"] == learnerkit.get_training_loop("offline")
    assert table["on_policy"].settings is learnerkit.OnPolicySettings
    assert [w.category for w in caught] == [LearnerkitDeprecationWarning]
    assert "learnerkit.get_training_loop" in str(caught[0].message)
    assert caught[0].filename == __file__
