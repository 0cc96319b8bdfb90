"""The plugin API's version and renames (issue 19, section 1): a plugin declares the API it
was written for (``requires_api``) and one this learnerkit does not meet is refused with the
fix; a renamed settings field keeps its old name for a release, wherever it is written
(keyword argument, a subclass's field, an attribute read, a config file, module overrides),
with a DeprecationWarning naming the new one. The test run filters DeprecationWarning, so
each test records warnings itself."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import attrs
import pytest
from conftest import bc_loss, make_plugin

import learnerkit
from learnerkit import (
    IncompatiblePluginError,
    LoopInfo,
    OnPolicySettings,
    PluginError,
    SamplingSettings,
)
from learnerkit.cli import build_parser
from learnerkit.errors import LearnerkitDeprecationWarning
from learnerkit.settings import evolve_hyperparameters, structure_hyperparameters


def plugin_requiring(requires_api: str | None):
    plugin = make_plugin("versioned", compute_loss=bc_loss)
    plugin.algorithm = attrs.evolve(plugin.algorithm, requires_api=requires_api)
    return plugin


@pytest.mark.parametrize("requires_api", [None, ">=0.2", "~=0.2", ">=0.1,<1", "==0.2.*"])
def test_a_plugin_whose_requires_api_this_learnerkit_meets_registers(register, requires_api):
    assert register(plugin_requiring(requires_api)).requires_api == requires_api


@pytest.mark.parametrize("requires_api", [">=0.3", "<0.2", "==1.0"])
def test_a_plugin_for_another_api_is_refused_naming_both_apis_and_the_fix(register, requires_api):
    with pytest.raises(IncompatiblePluginError) as excinfo:
        register(plugin_requiring(requires_api))
    message = str(excinfo.value)
    assert f"plugin 'test_plugin_versioned' requires learnerkit API {requires_api}" in message
    assert f"provides API {learnerkit.API_VERSION}" in message and "pip install" in message


def test_a_malformed_requires_api_is_a_plugin_error_showing_the_form(register):
    with pytest.raises(PluginError, match=r"'two' is not a version specifier.*'>=0\.2'"):
        register(plugin_requiring("two"))


def test_the_strict_lookup_of_an_installed_incompatible_plugin_raises(use_plugin_packages):
    use_plugin_packages("learnerkit-broken")
    with pytest.raises(IncompatiblePluginError, match=r"requires learnerkit API >=9\.0"):
        learnerkit.get_algorithm("future_api")
    rows = {row.name: row for row in learnerkit.list_plugins()}
    assert rows["future_api"].status == "incompatible"


def test_a_loop_for_another_api_is_refused_and_listed_as_incompatible(use_plugin_packages):
    info = LoopInfo("later", SamplingSettings, "nowhere:Loop", requires_api=">=5")
    with pytest.raises(IncompatiblePluginError, match="requires learnerkit API >=5"):
        learnerkit.register_training_loop(info)
    use_plugin_packages("learnerkit-broken-loops")
    rows = {row.name: row for row in learnerkit.list_training_loops()}
    assert rows["future_loop"].status == "incompatible"
    assert "~=7.1" in rows["future_loop"].error


# Renamed settings fields -----------------------------------------------------------------
def recorded(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn()
    return value, [w for w in caught if issubclass(w.category, DeprecationWarning)]


def test_an_old_field_name_as_a_keyword_argument_sets_the_new_field_with_a_warning():
    hps, caught = recorded(lambda: OnPolicySettings(num_envs=2, minibatch_size=64))
    assert hps.num_envs_per_env_runner == 2
    assert len(caught) == 1 and caught[0].category is LearnerkitDeprecationWarning
    assert "'num_envs' is now called 'num_envs_per_env_runner'" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller


def test_an_old_field_name_read_as_an_attribute_reads_the_new_field_with_a_warning():
    hps = OnPolicySettings(num_envs_per_env_runner=4, minibatch_size=64)
    value, caught = recorded(lambda: hps.num_envs)
    assert value == 4 and len(caught) == 1 and "num_envs_per_env_runner" in str(caught[0].message)
    with pytest.raises(AttributeError, match="no attribute 'num_env'"):
        hps.num_env  # noqa: B018


def test_a_subclass_redefining_a_field_under_its_old_name_changes_the_new_fields_default():
    def define():
        @attrs.frozen(kw_only=True)
        class OldStyle(OnPolicySettings):
            num_envs: int = 2
            minibatch_size: int = 32

        return OldStyle

    cls, caught = recorded(define)
    assert cls().num_envs_per_env_runner == 2
    assert "num_envs" not in {f.name for f in attrs.fields(cls)}
    assert len(caught) == 1
    assert "OldStyle redefines the setting 'num_envs'" in str(caught[0].message)


def test_an_old_field_name_in_a_config_table_or_module_overrides_is_renamed_with_a_warning():
    hps, caught = recorded(
        lambda: structure_hyperparameters(
            OnPolicySettings, {"num_envs": 2, "minibatch_size": 64}, where=" in run.toml"
        )
    )
    assert hps.num_envs_per_env_runner == 2
    assert "'num_envs' in run.toml is now called" in str(caught[0].message)
    evolved, caught = recorded(lambda: evolve_hyperparameters(hps, {"num_envs": 3}, module_id="m"))
    assert evolved.num_envs_per_env_runner == 3
    assert "module_hyperparameters['m']" in str(caught[0].message)


def test_giving_both_the_old_and_the_new_name_is_an_error_naming_the_one_to_keep():
    with pytest.raises(learnerkit.ConfigError, match="give only 'num_envs_per_env_runner'"):
        OnPolicySettings(num_envs=2, num_envs_per_env_runner=2)


def test_the_old_command_line_option_sets_the_new_one_with_a_warning_naming_it():
    parser = build_parser()
    args, caught = recorded(lambda: parser.parse_args(["train", "--num-envs", "3"]))
    assert args.num_envs_per_env_runner == 3
    assert len(caught) == 1 and caught[0].category is LearnerkitDeprecationWarning
    assert "--num-envs is now called --num-envs-per-env-runner" in str(caught[0].message)
    args, caught = recorded(lambda: parser.parse_args(["train", "--num-envs-per-env-runner", "3"]))
    assert args.num_envs_per_env_runner == 3 and caught == []
    assert parser.parse_args(["train"]).num_envs_per_env_runner is None


@pytest.mark.slow
def test_the_command_shows_the_warning_for_an_old_name_in_a_config_file(tmp_path):
    # minibatch_size is too large for 1 x 2 x 8 samples: the run stops at the settings (no
    # training), after the old name was taken as the new one.
    config = tmp_path / "run.json"
    config.write_text(
        json.dumps({"num_envs": 2, "rollout_fragment_length": 8, "minibatch_size": 64})
    )
    proc = subprocess.run(
        [sys.executable, "-m", "learnerkit", "train", "ppo", "--config", str(config), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "LearnerkitDeprecationWarning" in proc.stderr
    assert "'num_envs' (--config) is now called 'num_envs_per_env_runner'" in proc.stderr
    assert "= 16; lower it" in proc.stderr  # 2 envs per runner: the old name took effect


def test_the_column_no_loop_supplies_still_reads_with_a_warning_saying_what_to_use():
    with pytest.warns(LearnerkitDeprecationWarning, match=r"module\.value\(batch\[Columns"):
        assert learnerkit.Columns.VALUES_BOOTSTRAPPED == "values_bootstrapped"
    with pytest.raises(AttributeError, match="NO_SUCH_COLUMN"):
        learnerkit.Columns.NO_SUCH_COLUMN  # noqa: B018
