"""``learnerkit list-plugins``: resilient (a broken plugin is shown with its error, exit code
0) and with a documented JSON shape. Each test runs the command in a fresh interpreter with
the test plugin packages on its path, as if pip-installed."""

from __future__ import annotations

import json

from conftest import run_learnerkit

JSON_KEYS = {
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


def list_plugins_json(plugin_dirs=(), env=None) -> dict[str, dict]:
    proc = run_learnerkit(
        "-m", "learnerkit", "list-plugins", "--json", plugin_dirs=plugin_dirs, env=env
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list)
    for row in rows:
        assert set(row) == JSON_KEYS
    return {row["name"]: row for row in rows}


def test_json_lists_an_installed_third_party_plugin_with_its_metadata(plugin_dirs):
    rows = list_plugins_json([plugin_dirs["learnerkit-echo"]])
    assert rows["echo"] == {
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
    rows = list_plugins_json(
        [plugin_dirs["learnerkit-echo"]], env={"LEARNERKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    )
    assert rows == {}


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
        env={"COLUMNS": "250"},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for header in ("name", "version", "package", "frameworks", "hooks", "status"):
        assert header in out
    for fragment in ("echo", "0.3.1", "learnerkit-echo", "bc", "learnerkit-bc", "ok", "error"):
        assert fragment in out
    assert "broken_import" in out and "failed to import" in out
    assert "advantage_estimate" in out
