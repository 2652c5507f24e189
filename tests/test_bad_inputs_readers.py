"""The bad-input matrix, part 2: hostile files the readers meet (leaderboard entries, records, training folders,
the text-head cache, work units), run through the shared harness of tests/test_bad_inputs.py.

A leaderboard JSON nested 100,000 levels deep, or with a key given twice, is an unreadable file like any other:
`validate` reports it (exit 1), `table` warns and leaves it out, `show`, `compare` and `run`'s leaderboard step
stop with a one-paragraph error (exit 2) before writing anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from test_bad_inputs import RUN, check_case, long_name, make_world
from zsrbench.cli import app

runner = CliRunner()
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory)


def _entry_dir() -> Path:
    """The world's one measured entry (the current folder is the world's copy while a setup runs)."""
    [edir] = [d for d in (Path.cwd() / "leaderboards" / "synthetic").iterdir() if d.is_dir()]
    return edir


def deep_revision(t: Path, monkeypatch) -> dict[str, str]:
    edir = _entry_dir()
    (edir / "r0002.json").write_text(DEEP)
    return {"entry": edir.name, "file": str(edir / "r0002.json")}


def duplicate_key_revision(t: Path, monkeypatch) -> dict[str, str]:
    edir = _entry_dir()
    text = (edir / "r0001.json").read_text()
    # a forged number the first-value reader would see, the true one after it
    (edir / "r0002.json").write_text(text.replace('"robust_accuracy": ', '"robust_accuracy": 0.99, "robust_accuracy": ', 1))
    return {"entry": edir.name, "file": str(edir / "r0002.json")}


def deep_record(t: Path, monkeypatch) -> dict[str, str]:
    """A result record of the world's results folder replaced by deep nesting (what `table --results-dir` reads)."""
    rec = next(p for p in (Path.cwd() / "results").rglob("*.json"))
    rec.write_text(DEEP)
    return {"record": str(rec)}


def deep_manifest(t: Path, monkeypatch) -> dict[str, str]:
    """A `zsrbench train` folder whose manifest.json nests 100,000 levels."""
    from zsrbench.training import train_defense

    out = t / "trained"
    train_defense("tecoa", protocol="synthetic", out_dir=out, steps=1, batch_size=8, seed=0, warmup_steps=1,
                  keep_checkpoints=False)
    (out / "manifest.json").write_text(DEEP)
    return {"folder": str(out)}


def duplicate_key_config(t: Path, monkeypatch) -> dict[str, str]:
    from zsrbench.training import train_defense

    out = t / "trained"
    train_defense("tecoa", protocol="synthetic", out_dir=out, steps=1, batch_size=8, seed=0, warmup_steps=1,
                  keep_checkpoints=False)
    cfg = json.loads((out / "open_clip_config.json").read_text())
    (out / "open_clip_config.json").write_text('{"model_cfg": {}, ' + json.dumps(cfg)[1:])
    return {"folder": str(out)}


SETUPS = {"deep": deep_revision, "dup": duplicate_key_revision, "deeprec": deep_record, "deepman": deep_manifest,
          "dupcfg": duplicate_key_config, "long": long_name}

# (id, setup, argv, what the message must say): exit 2, no traceback, nothing written
CASES: list[tuple[str, str | None, list[str], str]] = [
    ("show-deep-revision", "deep", ["show", "{entry}"], "nested too deeply"),
    ("show-duplicate-key", "dup", ["show", "{entry}"], "'robust_accuracy' appears twice"),
    ("history-deep-revision-at", "deep", ["show", "{entry}@r0002"], "nested too deeply"),
    ("compare-deep-revision", "deep", ["compare", "{entry}", "{entry}"], "nested too deeply"),
    ("run-onto-deep-revision", "deep", [*RUN, "--attack", "pgd"], "nested too deeply"),
    ("run-onto-duplicate-key", "dup", [*RUN, "--attack", "pgd"], "appears twice"),
    ("run-deep-manifest", "deepman", [*RUN, "--defense", "tecoa", "--checkpoint", "{folder}"], "nested too deeply"),
    ("run-duplicate-key-config", "dupcfg", [*RUN, "--defense", "tecoa", "--checkpoint", "{folder}"],
     "'model_cfg' appears twice"),
    ("run-data-root-name-too-long", "long", ["run", "--protocol", "tga16", "--data-root", "{long}"], "too long"),
    ("train-data-root-name-too-long", "long", ["train", "--protocol", "tga16", "--defense", "tecoa", "--data-root",
                                                "{long}"], "too long"),
]
VALIDATE_CASES = [
    ("validate-deep-revision", "deep", ["validate", "leaderboards"], "nested too deeply"),
    ("validate-duplicate-key", "dup", ["validate", "leaderboards"], "appears twice"),
    ("validate-deep-record", "deeprec", ["validate", "results"], "nested too deeply"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, world, tmp_path, monkeypatch):
    check_case(case, world, tmp_path, monkeypatch, SETUPS)


@pytest.mark.parametrize("case", VALIDATE_CASES, ids=[c[0] for c in VALIDATE_CASES])
def test_validate_reports_it(case, world, tmp_path, monkeypatch):
    check_case(case, world, tmp_path, monkeypatch, SETUPS, code=1)


@pytest.mark.parametrize("setup", ["deep", "dup"])
@pytest.mark.parametrize("argv", [["table"], ["table", "--markdown"], ["history", "{entry}"]],
                         ids=["table", "table-markdown", "history"])
def test_readers_warn_and_skip(setup, argv, world, tmp_path, monkeypatch):
    import shutil

    here = tmp_path / "world"
    shutil.copytree(world, here)
    monkeypatch.chdir(here)
    made = SETUPS[setup](tmp_path, monkeypatch)
    res = runner.invoke(app, [a.format(**made) for a in argv])
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    text = " ".join(res.output.split())
    assert "r0002.json" in text or "INVALID" in text  # named (table: a warning; history: the revision's line)
    assert "nested too deeply" in text or "appears twice" in text
    assert "0.99" not in res.output  # the forged first value is shown nowhere


def test_the_readers_matrix():
    assert len(CASES) + len(VALIDATE_CASES) >= 10


def test_a_unit_file_longer_than_its_unit_is_evaluated_again(tmp_path, monkeypatch):
    """A unit file with the right index but arrays of another length is not taken by --resume."""
    import numpy as np

    from zsrbench.evaluation import runner
    from zsrbench.evaluation.config import RunConfig
    from zsrbench.evaluation.runner import run
    from zsrbench.evaluation.units import UnitResult

    cfg = RunConfig(protocol="synthetic", datasets=("synthetic_shapes",), attacks=("pgd",), attack_params={"steps": 2},
                    n_samples=24, batch_size=8, leaderboard_dir=None, device="cpu", jobs=1)
    [ref] = run(RunConfig(**{**cfg.__dict__, "results_dir": str(tmp_path / "ref")}), progress=False)
    saved = []
    real_save = runner._save_unit

    def crash_after_two(store, unit):
        real_save(store, unit)
        saved.append(store.path(unit.index))
        if len(saved) == 2:
            raise KeyboardInterrupt  # the run dies with two units on disk

    monkeypatch.setattr(runner, "_save_unit", crash_after_two)
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        run(RunConfig(**{**cfg.__dict__, "results_dir": str(out)}), progress=False)
    monkeypatch.setattr(runner, "_save_unit", real_save)
    first = UnitResult.from_bytes(saved[0].read_bytes())
    longer = UnitResult(index=first.index, labels=np.concatenate([first.labels] * 2),
                        clean_pred=np.concatenate([first.clean_pred] * 2), nonfinite=np.concatenate([first.nonfinite] * 2),
                        robust={a: np.concatenate([v] * 2) for a, v in first.robust.items()}, infos=first.infos,
                        timing=first.timing)
    saved[0].write_bytes(longer.to_bytes())
    logs: list[str] = []
    [done] = run(RunConfig(**{**cfg.__dict__, "results_dir": str(out), "resume": True}), progress=False,
                 log=logs.append)
    assert any("1 of 3 units already evaluated" in line for line in logs), logs  # the longer one was not taken
    assert done.record.metrics.n == 24 == ref.record.metrics.n
    assert done.record.metrics == ref.record.metrics
