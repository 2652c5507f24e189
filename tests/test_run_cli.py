"""End to end: `zsrbench run` on the synthetic protocol, result records, and bad input."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from zsrbench.cli import app
from zsrbench.leaderboard.records import metrics_from_flags, read_flags, read_record
from zsrbench.paths import resolve_portable

runner = CliRunner()
FAST = ["--protocol", "synthetic", "--steps", "3", "--quiet"]


def invoke(*args):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    board = tmp_path_factory.mktemp("board")
    res = invoke("run", "--attack", "pgd,cw", "--eps", "4", "--results-dir", str(out), "--leaderboard-dir", str(board),
                 *FAST)
    assert res.exit_code == 0, res.output
    return out, res, board


def test_run_writes_valid_records(synthetic_run):
    out, res, board = synthetic_run
    revisions = sorted(board.rglob("r0001.json"))
    assert len(revisions) == 1 and "synthetic" in str(revisions[0])  # one leaderboard entry, first revision
    files = sorted(out.rglob("*.json"))
    assert [f.stem for f in files] == ["synthetic_colors", "synthetic_shapes"]
    for f in files:
        rec = read_record(f)
        m = rec.metrics
        assert 0 <= m.robust_accuracy <= m.clean_accuracy <= 1
        assert m.robust_accuracy <= min(m.per_attack.values())
        assert rec.protocol.eps_text == "4/255" and abs(rec.protocol.eps - 4 / 255) < 1e-12
        assert [a.name for a in rec.protocol.attacks] == ["pgd", "cw"]
        assert rec.protocol.attacks[1].params["kappa"] == 50.0 and rec.protocol.attacks[0].params["steps"] == 3
        assert [a.params["eot"] for a in rec.protocol.attacks] == [1, 1]  # plain PGD/CW, recorded
        assert rec.env.torch and rec.protocol.indices_digest.startswith("sha256:")
        flags = read_flags(f, rec)
        again = metrics_from_flags(flags, m.num_classes, ["pgd", "cw"])
        assert m.n_nonfinite == 0 and flags["nonfinite"].dtype == bool and not flags["nonfinite"].any()
        assert again == m  # every number re-derivable from the sidecar
        assert not (flags["robust"] & ~flags["clean_correct"]).any()
        raw = json.loads(f.read_text())
        assert isinstance(raw["metrics"]["clean_accuracy"], float)


def test_seeded_runs_are_deterministic(synthetic_run, tmp_path):
    out, _, board = synthetic_run
    res = invoke("run", "--attack", "pgd,cw", "--eps", "4", "--results-dir", str(tmp_path), "--no-leaderboard", *FAST)
    assert res.exit_code == 0
    for f in out.rglob("*.json"):
        g = tmp_path / f.relative_to(out)
        a, b = read_flags(f), read_flags(g)
        assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--defense", "tecoaa"], "Unknown defense"),
        (["--attack", "pgdd"], "Did you mean 'pgd'"),
        (["--protocol", "tga17"], "Unknown protocol"),
        (["--datasets", "cifar11"], "Unknown dataset"),
        (["--eps", "0"], "(0, 255]"),
        (["--eps", "300"], "(0, 255]"),
        (["--steps", "0"], "--steps must be a whole number ≥ 1"),
        (["--eot", "0"], "--eot must be a whole number ≥ 1"),
        (["--attack", "aa-lite", "--eot", "4"], "takes no parameter eot"),
        (["--checkpoint", "/nonexistent/ckpt.pt", "--model", "zsr-tiny"], "does not exist"),
    ],
)
def test_bad_input_exit_2_without_traceback(args, needle, tmp_path):
    out = tmp_path / "res"
    res = invoke("run", "--protocol", "synthetic", "--quiet", "--results-dir", str(out), *args)
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert not out.exists() and not Path("leaderboards").exists()  # nothing written


def test_missing_data_root(tmp_path):
    res = invoke("run", "--protocol", "tga16", "--quiet", "--results-dir", str(tmp_path / "r"))
    assert res.exit_code == 2 and "--data-root" in res.output
    res = invoke("run", "--protocol", "tga16", "--data-root", str(tmp_path / "nope"), "--quiet")
    assert res.exit_code == 2 and "does not exist" in res.output


def test_unwritable_results_dir_leaves_existing_data(synthetic_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    res = invoke("run", "--results-dir", str(blocker / "sub"), *FAST)
    assert res.exit_code == 2 and "not writable" in res.output
    assert blocker.read_text() == "keep me"


def test_checkpoint_wrong_keys_exit_2(tmp_path):
    import torch

    torch.save({"nonsense.weight": torch.zeros(2)}, tmp_path / "bad.pt")
    res = invoke("run", "--model", "zsr-tiny", "--checkpoint", str(tmp_path / "bad.pt"), "--results-dir",
                 str(tmp_path / "r"), *FAST)
    assert res.exit_code == 2 and "unexpected keys: nonsense.weight" in res.output
    assert not (tmp_path / "r").exists()


def test_list_attacks_and_datasets():
    res = invoke("list", "attacks")
    for name in ("pgd", "cw", "autoattack", "aa-lite", "aa-fare", "aa-rand"):
        assert name in res.output
    assert invoke("list", "protocols").exit_code == 0
    assert invoke("list", "nothing").exit_code == 2


def test_plugin_from_examples_registers_and_runs(tmp_path):
    """The example plugin, installed by pip, shows up in `zsrbench list` and runs with `zsrbench run`."""
    root = Path(__file__).resolve().parents[1]
    target = tmp_path / "site"
    src = tmp_path / "src"  # built from a copy: no build/ or *.egg-info left in the repository
    shutil.copytree(root / "examples" / "zsrbench-example-plugin", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
         str(target), str(src)],
        capture_output=True, text=True,
    )
    assert pip.returncode == 0, pip.stderr
    env = {**__import__("os").environ, "PYTHONPATH": str(target), "COLUMNS": "300"}
    cmd = [sys.executable, "-m", "zsrbench.cli"]
    listed = subprocess.run(cmd + ["list", "defenses"], capture_output=True, text=True, env=env)
    assert "blur_clip" in listed.stdout and "plugin zsrbench-example-plugin" in listed.stdout
    ran = subprocess.run(cmd + ["run", "--defense", "blur_clip", "--attack", "pgd,noise", "--results-dir",
                                str(tmp_path / "r"), *FAST], capture_output=True, text=True, env=env)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    rec = read_record(next((tmp_path / "r").rglob("synthetic_shapes.json")))
    assert rec.model.defense == "blur_clip" and rec.protocol.suite == "pgd+noise"


def test_resume_skips_identical_evaluations(synthetic_run):
    out, _, board = synthetic_run
    before = {f: f.stat().st_mtime_ns for f in out.rglob("*.json")}
    res = invoke("run", "--attack", "pgd,cw", "--eps", "4", "--results-dir", str(out), "--resume", "--protocol",
                 "synthetic", "--steps", "3")
    assert res.exit_code == 0 and "skipped (--resume)" in res.output
    assert {f: f.stat().st_mtime_ns for f in out.rglob("*.json")} == before


@pytest.mark.parametrize("changed, folder", [
    (["--seed", "1"], "eps4__seed1__pgd-steps3__cw-steps3"),  # (--steps 3 is itself not the protocol's 10)
    (["--batch-size", "3"], "eps4__bs3__pgd-steps3__cw-steps3"),
    (["--steps", "4"], "eps4__pgd-steps4__cw-steps4"),
])
def test_resume_never_takes_a_record_of_other_settings(synthetic_run, tmp_path, changed, folder):
    """A setting that changes the per-sample flags keys the record's folder: --resume recomputes, and the
    protocol-default record is neither reused nor replaced."""
    out, _, _ = synthetic_run
    results = tmp_path / "r"
    shutil.copytree(out, results)
    before = {f: f.read_bytes() for f in results.rglob("*") if f.is_file()}
    res = invoke("run", "--attack", "pgd,cw", "--eps", "4", "--results-dir", str(results), "--resume", "--protocol",
                 "synthetic", "--steps", "3", *changed, "--no-leaderboard")
    assert res.exit_code == 0 and "skipped (--resume)" not in res.output, res.output
    assert {f: f.read_bytes() for f in before} == before  # the default-settings records are untouched
    made = sorted(f for f in results.rglob("*.json") if f not in before)
    assert [f.parent.name for f in made] == [folder, folder]
    assert read_record(made[0]).protocol.variant == folder.split("__", 1)[1]


def test_tga16_run_on_a_data_root(tmp_path):
    """`zsrbench run --protocol tga16 --data-root DIR` end to end on tiny copies of two datasets' layouts."""
    from fake_layouts import make_all

    make_all(tmp_path / "data", ["cifar10", "pcam"])
    res = invoke("run", "--protocol", "tga16", "--data-root", str(tmp_path / "data"), "--datasets", "cifar10,pcam",
                 "--model", "zsr-tiny", "--steps", "2", "--eps", "1", "--results-dir", str(tmp_path / "r"), "--quiet")
    assert res.exit_code == 0, res.output
    recs = {p.stem: read_record(p) for p in (tmp_path / "r").rglob("*.json")}
    assert set(recs) == {"cifar10", "pcam"}
    assert recs["pcam"].protocol.templates == [["This is a photo of healthy lymph node tissue."],
                                               ["This is a photo of lymph node tumor tissue."]]
    assert recs["cifar10"].protocol.input_mode == "native" and recs["pcam"].protocol.input_mode == "crop"
    assert recs["cifar10"].protocol.settings["version"] == 1
    # a dataset missing from the root: a clear error naming the path, nothing written for it
    res = invoke("run", "--protocol", "tga16", "--data-root", str(tmp_path / "data"), "--datasets", "dtd",
                 "--model", "zsr-tiny", "--results-dir", str(tmp_path / "r2"), "--quiet")
    assert res.exit_code == 2 and str(tmp_path / "data") in res.output and "Traceback" not in res.output


def test_trainable_defense_is_fine_tuned_on_demand_and_cached(tmp_path):
    """Under a protocol with train_on_demand, `run --defense tecoa` fine-tunes once, then reuses the cache."""
    args = ["run", "--defense", "tecoa", "--results-dir", str(tmp_path / "r"), "--no-leaderboard", *FAST]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    rec = read_record(next((tmp_path / "r").rglob("synthetic_shapes.json")))
    assert rec.model.defense == "tecoa" and rec.model.id.startswith("tecoa/zsr-tiny/")
    assert rec.model.hparams["template"] == "This is a photo of a {}" and rec.model.hparams["steps"] == 2
    folder = Path(resolve_portable(rec.model.checkpoint))
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    second = invoke(*args)
    assert second.exit_code == 0 and (folder / "manifest.json").stat().st_mtime_ns == stamp  # cache hit
    # a protocol without on-demand training says how to get weights
    res = invoke("run", "--defense", "tecoa", "--protocol", "tga16", "--data-root", str(tmp_path), "--quiet")
    assert res.exit_code == 2 and "zsrbench train --defense tecoa" in res.output


def test_shards_split_datasets_and_share_one_leaderboard_entry(tmp_path):
    board = tmp_path / "board"
    for k in (0, 1):
        res = invoke("run", "--shard", f"{k}/2", "--results-dir", str(tmp_path / "r"), "--leaderboard-dir", str(board),
                     *FAST)
        assert res.exit_code == 0, res.output
    assert sorted(p.stem for p in (tmp_path / "r").rglob("*.json")) == ["synthetic_colors", "synthetic_shapes"]
    table = invoke("table", "--protocol", "synthetic", "--leaderboard-dir", str(board), "--csv")
    assert table.exit_code == 0, table.output
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(table.output)))
    robust = [r for r in rows if r["metric"] == "robust" and r["table"] == "suite"]
    assert len(robust) == 1  # one entry holds both shards' datasets
    assert robust[0]["synthetic_shapes"] not in ("", "–") and robust[0]["synthetic_colors"] not in ("", "–")
    bad = invoke("run", "--shard", "2/2", *FAST)
    assert bad.exit_code == 2 and "0 ≤ K < N" in bad.output


def test_leaderboard_commands_do_not_import_torch():
    """`zsrbench table/show/history/validate` start in well under a second: the CLI imports torch lazily."""
    import subprocess
    import sys

    code = ("import sys, zsrbench.cli; from zsrbench.leaderboard import store, tables, render; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_eot_option_is_recorded(tmp_path):
    """`--eot N` reaches pgd and cw and is recorded in each record's attack params."""
    res = invoke("run", "--attack", "pgd,cw", "--eot", "2", "--steps", "2", "--protocol", "synthetic", "--datasets",
                 "synthetic_colors", "--results-dir", str(tmp_path), "--no-leaderboard", "--quiet")
    assert res.exit_code == 0, res.output
    rec = read_record(next(tmp_path.rglob("synthetic_colors.json")))
    assert [(a.name, a.params["eot"]) for a in rec.protocol.attacks] == [("pgd", 2), ("cw", 2)]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "2"])
def test_check_config_validates_eot(bad):
    from zsrbench.errors import ZsrError
    from zsrbench.evaluation.config import RunConfig, check_config

    with pytest.raises(ZsrError, match="--eot must be a whole number ≥ 1"):
        check_config(RunConfig(protocol="synthetic", attacks=("pgd",), attack_params={"eot": bad}))


def test_eot_applies_to_pgd_and_cw_only():
    from zsrbench.errors import ZsrError
    from zsrbench.evaluation.config import RunConfig, check_config

    _, _, _, params = check_config(RunConfig(protocol="synthetic", attacks=("pgd", "aa-lite"),
                                             attack_params={"eot": 3}))
    assert params["pgd"]["eot"] == 3 and "eot" not in params["aa-lite"]
    _, _, _, params = check_config(RunConfig(protocol="synthetic", attacks=("cw",)))
    assert params["cw"]["eot"] == 1
    for suite in (("aa-rand",), ("autoattack", "aa-fare")):
        with pytest.raises(ZsrError, match="takes no parameter eot"):
            check_config(RunConfig(protocol="synthetic", attacks=suite, attack_params={"eot": 2}))
