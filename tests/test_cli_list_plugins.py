"""``learnerkit list-plugins``: resilient (a broken plugin is shown with its error, exit code
0) and with a documented JSON shape: the algorithms, then the training loops, every row with
the same keys (``kind`` tells them apart). Each test runs the command in a fresh interpreter
with the test plugin packages on its path, as if pip-installed."""

from __future__ import annotations

import json

from conftest import run_learnerkit

import learnerkit

JSON_KEYS = {
    "kind",
    "settings",
    "declares",
    "name",
    "version",
    "package",
    "frameworks",
    "hooks",
    "status",
    "error",
    "entry_point",
    "training_loop",
}


def list_json(plugin_dirs=(), env=None) -> list[dict]:
    proc = run_learnerkit(
        "-m", "learnerkit", "list-plugins", "--json", plugin_dirs=plugin_dirs, env=env
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list)
    for row in rows:
        assert set(row) == JSON_KEYS
    kinds = [row["kind"] for row in rows]
    assert kinds == sorted(kinds)  # the algorithms first, as before, then the loops
    return rows


def list_plugins_json(plugin_dirs=(), env=None) -> dict[str, dict]:
    """The algorithm rows, by name."""
    return {r["name"]: r for r in list_json(plugin_dirs, env) if r["kind"] == "algorithm"}


def test_json_lists_an_installed_third_party_plugin_with_its_metadata(plugin_dirs):
    rows = list_plugins_json([plugin_dirs["learnerkit-echo"]])
    assert rows["echo"] == {
        "kind": "algorithm",
        "settings": "learnerkit_echo:EchoHyperparameters",
        "declares": None,
        "name": "echo",
        "version": "0.3.1",
        "package": "learnerkit-echo",
        "frameworks": ["torch", "tf"],
        "hooks": rows["echo"]["hooks"],
        "status": "ok",
        "error": None,
        "entry_point": "learnerkit_echo",
        "training_loop": None,
    }
    assert sorted(rows["echo"]["hooks"]) == ["additional_update", "compute_loss"]
    assert rows["bc"]["status"] == "ok"
    assert rows["bc"]["package"] == "learnerkit-bc"
    assert rows["ppo"]["training_loop"] == "on_policy"


def test_json_lists_broken_plugins_with_their_errors_and_still_exits_zero(plugin_dirs):
    rows = list_plugins_json([plugin_dirs["learnerkit-echo"], plugin_dirs["learnerkit-broken"]])
    assert rows["echo"]["status"] == "ok"
    assert rows["bc"]["status"] == "ok"
    expected = {
        "broken_import": "ModuleNotFoundError",
        "bad_argument": "advantage_estimate",
        "misspelt_hook": "compile_result",
    }
    for name, fragment in expected.items():
        row = rows[name]
        assert row["status"] == "error"
        assert row["package"] == "learnerkit-broken"
        assert row["entry_point"] == f"learnerkit_broken.{name}"
        assert name in row["error"] and fragment in row["error"]
        assert row["frameworks"] == [] and row["hooks"] == []


def test_json_marks_a_disabled_plugin_as_disabled(plugin_dirs):
    rows = list_plugins_json(
        [plugin_dirs["learnerkit-echo"]], env={"LEARNERKIT_DISABLE_PLUGINS": "echo"}
    )
    assert rows["echo"]["status"] == "disabled"
    assert rows["echo"]["error"] is None
    assert rows["bc"]["status"] == "ok"


def test_json_is_an_empty_list_when_autoload_is_off(plugin_dirs):
    rows = list_json(
        [plugin_dirs["learnerkit-echo"]], env={"LEARNERKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    )
    assert rows == []


def test_json_shows_a_name_claimed_twice_as_an_error_naming_both_packages(plugin_dirs):
    rows = run_learnerkit(
        "-m",
        "learnerkit",
        "list-plugins",
        "--json",
        plugin_dirs=[plugin_dirs["learnerkit-echo"], plugin_dirs["learnerkit-echo-twin"]],
    )
    assert rows.returncode == 0, rows.stderr
    echo_rows = [row for row in json.loads(rows.stdout) if row["name"] == "echo"]
    assert len(echo_rows) == 2
    assert {row["package"] for row in echo_rows} == {"learnerkit-echo", "learnerkit-echo-twin"}
    for row in echo_rows:
        assert row["status"] == "error"
        assert "learnerkit-echo " in row["error"] and "learnerkit-echo-twin" in row["error"]


def test_table_shows_every_plugin_and_the_errors_of_broken_ones(plugin_dirs):
    proc = run_learnerkit(
        "-m",
        "learnerkit",
        "list-plugins",
        plugin_dirs=[plugin_dirs["learnerkit-echo"], plugin_dirs["learnerkit-broken"]],
        # Piped, as into a file or a CI log: the tables widen past 80 columns, cutting nothing.
        env={"COLUMNS": "80"},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for header in ("name", "version", "package", "frameworks", "hooks", "status"):
        assert header in out
    for fragment in ("echo", "0.3.1", "learnerkit-echo", "bc", "learnerkit-bc", "ok", "error"):
        assert fragment in out
    assert "…" not in out
    assert "learnerkit-impala" in out and "AsyncSettings" in out
    assert "additional_update, compile_results, compute_loss, configure_optimizers" in out
    assert "broken_import" in out and "failed to import" in out
    assert "advantage_estimate" in out
    assert "incompatible" in out and "requires learnerkit API >=9.0" in out


def test_json_shows_a_plugin_written_for_another_api_as_incompatible_with_the_fix(plugin_dirs):
    rows = list_plugins_json([plugin_dirs["learnerkit-broken"]])
    row = rows["future_api"]
    assert row["status"] == "incompatible" and row["package"] == "learnerkit-broken"
    assert f"provides API {learnerkit.API_VERSION}" in row["error"]
    assert "pip install 'learnerkit>=9.0'" in row["error"]
    assert "Traceback" not in row["error"]
    # An import of a name that moved away without a deprecation points at the changelog.
    old = rows["old_import"]
    assert old["status"] == "error" and "in_unit_interval" in old["error"]
    assert "'Removed'" in old["error"] and learnerkit.API_VERSION in old["error"]
    assert rows["bc"]["status"] == "ok"


# Training loops ---------------------------------------------------------------------------
def loop_rows(plugin_dirs=(), env=None) -> dict[str, dict]:
    return {r["name"]: r for r in list_json(plugin_dirs, env) if r["kind"] == "training_loop"}


def test_json_lists_the_training_loops_after_the_algorithms(plugin_dirs):
    rows = loop_rows([plugin_dirs["learnerkit-fullbatch"]])
    assert rows["full_batch"] == {
        "kind": "training_loop",
        "name": "full_batch",
        "version": "0.2.0",
        "package": "learnerkit-fullbatch",
        "frameworks": [],
        "hooks": [],
        "status": "ok",
        "error": None,
        "training_loop": None,
        "entry_point": "learnerkit_fullbatch:full_batch",
        "settings": "learnerkit_fullbatch:FullBatchSettings",
        "declares": {
            "uses_env_runners": True,
            "reads_dataset": False,
            "multi_agent": False,
            "sequences": False,
        },
    }
    assert rows["on_policy"]["package"] == "learnerkit"
    assert rows["offline"]["settings"] == "learnerkit.settings:OfflineSettings"
    assert rows["offline"]["declares"]["reads_dataset"] is True
    assert list_plugins_json([plugin_dirs["learnerkit-fullbatch"]])["a2c"]["training_loop"] == (
        "full_batch"
    )


def test_json_lists_broken_loops_with_their_errors_and_still_exits_zero(plugin_dirs):
    rows = loop_rows([plugin_dirs["learnerkit-broken-loops"]])
    for name, fragment in {
        "broken_import": "ModuleNotFoundError",
        "not_a_loop": "not a learnerkit.LoopInfo",
        "unsampled_settings": "SamplingSettings",
        "future_loop": "requires learnerkit API ~=7.1",
    }.items():
        assert rows[name]["status"] == ("incompatible" if name == "future_loop" else "error")
        assert rows[name]["package"] == "learnerkit-broken-loops"
        assert name in rows[name]["error"] and fragment in rows[name]["error"]
        assert rows[name]["declares"] is None and rows[name]["settings"] is None
    assert rows["on_policy"]["status"] == "ok"


def test_json_marks_a_disabled_loop_and_a_loop_claimed_twice(plugin_dirs):
    both = [plugin_dirs["learnerkit-fullbatch"], plugin_dirs["learnerkit-broken-loops"]]
    rows = [
        r
        for r in list_json(both, env={"LEARNERKIT_DISABLE_PLUGINS": "async"})
        if r["kind"] == "training_loop"
    ]
    assert next(r for r in rows if r["name"] == "async")["status"] == "disabled"
    claims = [r for r in rows if r["name"] == "full_batch"]
    assert {r["package"] for r in claims} == {"learnerkit-fullbatch", "learnerkit-broken-loops"}
    for row in claims:
        assert row["status"] == "error" and "claimed by two distributions" in row["error"]


def test_table_shows_the_loops_and_an_algorithm_whose_loop_is_missing(plugin_dirs):
    proc = run_learnerkit(
        "-m",
        "learnerkit",
        "list-plugins",
        plugin_dirs=[plugin_dirs["learnerkit-fullbatch"], plugin_dirs["learnerkit-broken-loops"]],
        env={"COLUMNS": "250", "LEARNERKIT_DISABLE_PLUGINS": "full_batch"},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "learnerkit training loops" in out
    for fragment in ("on_policy", "OnPolicySettings", "multi_agent", "reads_dataset"):
        assert fragment in out
    assert "full_batch (disabled)" in out  # a2c's loop
    assert "broken_import" in out and "failed to import" in out
