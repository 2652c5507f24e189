"""`zsrbench sweep`: a grid through submitit's local executor lands its leaderboard entries, a second call
skips them all, and a bad grid is an exit-2 error that writes nothing."""

from dataclasses import replace

import pytest
from typer.testing import CliRunner

from zsrbench.cli import app
from zsrbench.run_config import RunConfig
from zsrbench.sweep import SweepJob, executor_parameters, first_line

runner = CliRunner()

GRID = """\
defenses = ["clip", "tecoa"]
attacks = ["pgd", "cw"]
protocols = ["synthetic"]

[run]
steps = 2
results_dir = "{results}"
leaderboard_dir = "{board}"

[executor]
time = 30
"""


def grid_file(tmp_path, text=GRID):
    path = tmp_path / "grid.toml"
    path.write_text(text.format(results=tmp_path / "results", board=tmp_path / "board"), encoding="utf-8")
    return path


def tree(root):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_local_executor_lands_the_grid_then_skips_it(tmp_path):
    grid = grid_file(tmp_path)
    res = runner.invoke(app, ["sweep", str(grid), "--executor", "local"])
    assert res.exit_code == 0, res.output
    assert "4 jobs expanded, 0 skipped" in res.output and "4 submitted" in res.output
    assert res.output.count(" done ") == 4 and "4 of 4 entries landed" in res.output
    entries = sorted(p.parent.name for p in (tmp_path / "board").rglob("r0001.json"))
    assert len(entries) == 4 and {e.split("__")[0] for e in entries} == {"clip", "tecoa"}
    assert {e.split("__")[3] for e in entries} == {"pgd", "cw"}
    assert (tmp_path / "results" / "sweeps" / "grid").is_dir()  # submitit's job files and logs

    before = tree(tmp_path / "board")
    again = runner.invoke(app, ["sweep", str(grid), "--executor", "local"])
    assert again.exit_code == 0, again.output
    assert "4 skipped" in again.output and "0 submitted" in again.output and again.output.count("skipped  ") == 4
    assert tree(tmp_path / "board") == before


def test_dry_run_lists_the_jobs_and_writes_nothing(tmp_path):
    grid = grid_file(tmp_path, GRID.replace('attacks = ["pgd", "cw"]', 'attacks = ["pgd,cw"]\neps = [1, 2]'))
    before = tree(tmp_path)
    res = runner.invoke(app, ["sweep", str(grid), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert res.output.count("would run") == 4 and "synthetic · tecoa · pgd+cw · 2/255" in res.output
    assert tree(tmp_path) == before


BAD = {
    "typo'd key": (GRID.replace("steps = 2", "stpes = 2"), [], ["unknown key 'stpes'", "Did you mean 'steps'?"]),
    "unknown defense": (GRID.replace('"tecoa"', '"tecao"'), [], ["Unknown defense 'tecao'", "Did you mean 'tecoa'?"]),
    "slurm without sbatch": (GRID, ["--executor", "slurm"], ["sbatch", "--executor local"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_exit_2_and_writes_nothing(tmp_path, monkeypatch, case):
    text, args, said = BAD[case]
    grid = grid_file(tmp_path, text)
    (tmp_path / "results").mkdir()
    (tmp_path / "board").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # (no sbatch, srun or anything else)
    before = tree(tmp_path)
    res = runner.invoke(app, ["sweep", str(grid), *args])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "Traceback" not in res.output
    for words in said:
        assert words in " ".join(res.output.split())
    assert tree(tmp_path) == before


def test_a_preempted_job_is_requeued_with_resume():
    cfg = RunConfig(defense="tecoa", protocol="synthetic", attacks=("pgd",), attack_params={"steps": 2})
    again = SweepJob(cfg).checkpoint()
    assert isinstance(again.function, SweepJob) and again.function.cfg == replace(cfg, resume=True)


def test_slurm_parameters_pass_through():
    params = executor_parameters("slurm", {"time": 90, "partition": "gpu", "gpus_per_node": 4, "tasks_per_node": 4,
                                           "mem_gb": 64}, "g")
    assert params == {"name": "zsrbench-g", "timeout_min": 90, "slurm_partition": "gpu", "gpus_per_node": 4,
                      "slurm_tasks_per_node": 4, "mem_gb": 64}
    assert executor_parameters("local", {}, "g")["timeout_min"] > 2  # not submitit's 2-minute default


def test_first_line_of_a_failed_job():
    trace = ("Job (task=0) failed during processing with trace:\n----------------------\n"
             "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    run()\n    ^^^^^\n"
             "zsrbench.errors.ZsrError: Data root /d does not exist.\nmore\n----------------------\n")
    assert first_line(RuntimeError(trace)) == "zsrbench.errors.ZsrError: Data root /d does not exist."
    assert first_line(ValueError("bad\nvalue")) == "ValueError: bad"
