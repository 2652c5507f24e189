"""Default folders: ``$ZSRBENCH_HOME`` for results/ and leaderboards/, ``$ZSRBENCH_CACHE`` /
``$XDG_CACHE_HOME`` for the cache, the options that override them, and cache paths recognised in records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zsrbench import paths
from zsrbench.cli import app

runner = CliRunner()
ENV = ("ZSRBENCH_HOME", "ZSRBENCH_CACHE", "XDG_CACHE_HOME")


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No zsrbench path variables set; HOME is a temporary folder."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------------------ the rules
def test_defaults_are_the_current_folder_and_home_moves_them(env, tmp_path):
    assert paths.results_dir() == Path("results") and paths.leaderboard_dir() == Path("leaderboards")
    env.setenv("ZSRBENCH_HOME", str(tmp_path / "zsr"))
    assert paths.results_dir() == tmp_path / "zsr" / "results"
    assert paths.leaderboard_dir() == tmp_path / "zsr" / "leaderboards"
    env.setenv("ZSRBENCH_HOME", "~/bench")
    assert paths.home() == tmp_path / "home" / "bench"
    env.setenv("ZSRBENCH_HOME", "  ")  # empty: unset
    assert paths.results_dir() == Path("results")


def test_cache_precedence(env, tmp_path):
    from zsrbench.paths import cache_dir

    assert paths.cache_dir() == tmp_path / "home" / ".cache" / "zsrbench" == cache_dir()
    env.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as the XDG rules say
    assert paths.cache_dir() == tmp_path / "home" / ".cache" / "zsrbench"
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_dir() == tmp_path / "xdg" / "zsrbench" == cache_dir()
    env.setenv("ZSRBENCH_CACHE", str(tmp_path / "mine"))
    assert paths.cache_dir() == tmp_path / "mine" == cache_dir()
    assert paths.cache_roots() == [tmp_path / "mine", tmp_path / "xdg" / "zsrbench",
                                   tmp_path / "home" / ".cache" / "zsrbench"]


def test_run_config_and_sweep_defaults_follow_home(env, tmp_path):
    from zsrbench.evaluation.config import RunConfig
    from zsrbench.evaluation.sweep_grid import _base_options

    assert (RunConfig().results_dir, RunConfig().leaderboard_dir) == ("results", "leaderboards")
    env.setenv("ZSRBENCH_HOME", str(tmp_path / "zsr"))
    cfg = RunConfig()
    assert cfg.results_dir == str(tmp_path / "zsr" / "results")
    assert cfg.leaderboard_dir == str(tmp_path / "zsr" / "leaderboards")
    opts = _base_options({})
    assert opts["results_dir"] == str(tmp_path / "zsr" / "results")
    assert opts["leaderboard_dir"] == str(tmp_path / "zsr" / "leaderboards")
    assert _base_options({"results_dir": "elsewhere"})["results_dir"] == str(Path("elsewhere").absolute())


# ------------------------------------------------------------------------------------------ the commands
def test_run_and_table_use_zsrbench_home_and_options_override_it(env, tmp_path, monkeypatch):
    home = tmp_path / "zsr"
    env.setenv("ZSRBENCH_HOME", str(home))
    env.setenv("ZSRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    run = ["run", "--protocol", "synthetic", "--attack", "pgd", "--steps", "2", "--n-samples", "8", "--quiet"]
    out = invoke(*run)
    assert out.exit_code == 0, out.output
    assert list((home / "results").rglob("*.json")) and list((home / "leaderboards" / "synthetic").iterdir())
    assert not (tmp_path / "results").exists() and not (tmp_path / "leaderboards").exists()
    table = invoke("table", "--protocol", "synthetic", "--json")  # reads $ZSRBENCH_HOME/leaderboards
    assert table.exit_code == 0, table.output
    assert [r["kind"] for g in json.loads(table.stdout)["groups"] for r in g["rows"]][:1] == ["measured"]
    checked = invoke("validate")  # its default path is $ZSRBENCH_HOME/leaderboards too (./leaderboards is missing)
    assert checked.exit_code == 0 and "valid" in checked.stdout, checked.output
    entry = next((home / "leaderboards" / "synthetic").iterdir()).name
    assert invoke("show", entry, "--json").exit_code == 0
    assert invoke("history", entry, "--json").exit_code == 0
    dry = invoke("migrate-paths", "--dry-run")
    assert dry.exit_code == 0, dry.output
    # explicit options win over $ZSRBENCH_HOME
    other = tmp_path / "other"
    out = invoke(*run, "--results-dir", other / "res", "--no-leaderboard")
    assert out.exit_code == 0 and list((other / "res").rglob("*.json"))
    empty = invoke("table", "--protocol", "synthetic", "--leaderboard-dir", other / "missing")
    assert empty.exit_code == 2 and str(other / "missing") in " ".join(empty.output.split())


def test_help_names_the_defaults(env):
    for cmd in (["run"], ["table"], ["show"], ["audit"]):
        text = " ".join(invoke(*cmd, "--help").output.split())
        assert "ZSRBENCH_HOME" in text, cmd


# ------------------------------------------------------------------------------------------ cache paths in records
def test_portable_names_recognise_the_xdg_cache(env, tmp_path):
    from zsrbench.leaderboard.maintain import portable_name
    from zsrbench.paths import portable_path, resolve_portable

    xdg = tmp_path / "xdg"
    env.setenv("XDG_CACHE_HOME", str(xdg))
    folder = xdg / "zsrbench" / "pretrained" / "zsr-micro-seed1"
    folder.mkdir(parents=True)
    assert portable_path(folder) == "cache:pretrained/zsr-micro-seed1"  # as new records name it
    assert resolve_portable("cache:pretrained/zsr-micro-seed1") == str(folder)
    # migrate-paths: this machine's XDG cache, whatever is below it
    assert portable_name(str(xdg / "zsrbench" / "text_heads" / "h.pt")) == "cache:text_heads/h.pt"
    # another machine's XDG cache, by zsrbench's own layout below <xdg>/zsrbench/
    assert portable_name("/scratch/u/.xdg/zsrbench/checkpoints/models--chs20--fare2-clip/snapshots/0a1b/m.pt") == \
        "cache:checkpoints/models--chs20--fare2-clip/snapshots/0a1b/m.pt"
    assert portable_name("/scratch/u/.xdg/zsrbench/pretrained/zsr-micro-seed3") == "cache:pretrained/zsr-micro-seed3"
    assert portable_name("/home/u/.cache/zsrbench/defenses/micro-v2/fare-s0-3adf6afe71e7") == \
        "cache:defenses/micro-v2/fare-s0-3adf6afe71e7"
    # not a cache: a folder that only happens to be called zsrbench keeps its file name only
    assert portable_name("/home/u/zsrbench/notes/ckpt.pt") == "ckpt.pt"
    # roots given beat the machine's own, and $ZSRBENCH_CACHE beats XDG
    env.setenv("ZSRBENCH_CACHE", str(tmp_path / "mine"))
    assert portable_name(str(tmp_path / "mine" / "checkpoints" / "x.pt")) == "cache:checkpoints/x.pt"
    assert portable_name("/srv/c/a/b.pt", ["/srv/c"]) == "cache:a/b.pt"
