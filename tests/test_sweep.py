"""`zsrbench sweep`: a grid through submitit's local executor lands its leaderboard entries, a second call
skips them all, and a bad grid is an exit-2 error that writes nothing."""

from dataclasses import replace

import pytest
from typer.testing import CliRunner

from zsrbench.cli import app
from zsrbench.evaluation.config import RunConfig
from zsrbench.evaluation.sweep import SweepJob, executor_parameters, first_line

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


def grid_file(tmp_path, text=GRID, name="grid.toml"):
    path = tmp_path / name
    path.write_text(text.format(results=tmp_path / "results", board=tmp_path / "board", tmp=tmp_path),
                    encoding="utf-8")
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


def with_run(lines):
    """GRID with ``lines`` added to its [run] table."""
    return GRID.replace('leaderboard_dir = "{board}"\n', 'leaderboard_dir = "{board}"\n' + lines + "\n")


LONG_PATH = "/".join(["y" * 200] * 25)  # short names, together longer than PATH_MAX (4096 bytes)
BAD = {
    "typo'd key": (GRID.replace("steps = 2", "stpes = 2"), [], ["unknown key 'stpes'", "Did you mean 'steps'?"]),
    "unknown defense": (GRID.replace('"tecoa"', '"tecao"'), [], ["Unknown defense 'tecao'", "Did you mean 'tecoa'?"]),
    "slurm without sbatch": (GRID, ["--executor", "slurm"], ["sbatch", "--executor local"]),
    # a name that would put the sweep's folder outside RESULTS_DIR/sweeps
    "name escapes its folder": ('name = "../../../X"\n' + GRID, ["--dry-run"], ["not a plain folder name",
                                                                             'name = "X"']),
    "absolute name": ('name = "{tmp}/elsewhere"\n' + GRID, [], ["not a plain folder name"]),
    "name of two folders": ('name = "a/b"\n' + GRID, ["--dry-run"], ["not a plain folder name"]),
    # what `zsrbench run` refuses, refused for the job before anything is submitted
    "missing checkpoint": (with_run('checkpoint = "{tmp}/nope.pt"'), ["--dry-run"],
                           ["job 1 of 4 (synthetic · clip · pgd · the protocol's ε)", "nope.pt does not exist"]),
    "checkpoint of another sha256": (with_run('checkpoint = "{tmp}/grid.toml"\ncheckpoint_sha256 = "' + "ab" * 32
                                              + '"'), ["--dry-run"], ["has sha256", "was expected"]),
    "published checkpoint of another defense": (with_run('checkpoint = "fare4-clip"'), ["--dry-run"],
                                                ["job 3 of 4 (synthetic · tecoa · pgd · the protocol's ε)",
                                                 "a published fare checkpoint, not tecoa"]),
    "published checkpoint without a defense": (with_run('checkpoint = "simclip2-vit-l-14"'), ["--dry-run"],
                                               ["job 3 of 4 (synthetic · tecoa · pgd · the protocol's ε)",
                                                "not a tecoa checkpoint", "List it with defense clip."]),
    # paths longer than the filesystem allows
    "folder path too long": (GRID, ["--dry-run", "--folder", "{tmp}/" + LONG_PATH], ["too long", "--folder"]),
    "folder name too long": (GRID, ["--dry-run", "--folder", "{tmp}/" + "x" * 300], ["too long", "--folder"]),
    "leaderboard path too long": (GRID.replace('"{board}"', '"{tmp}/' + LONG_PATH + '"'), ["--dry-run"],
                                  ["too long", "leaderboard_dir under [run]"]),
    # more jobs than are submitted without a word
    "too many jobs": (GRID.replace('attacks = ["pgd", "cw"]', 'attacks = ["pgd", "cw"]\neps = ['
                                   + ", ".join(map(str, range(1, 127))) + "]"), [],
                      ["would submit 504 jobs, more than 500", "--yes", "--dry-run"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_exit_2_and_writes_nothing(tmp_path, monkeypatch, case):
    text, args, said = BAD[case]
    grid = grid_file(tmp_path, text)
    args = [a.format(tmp=tmp_path) for a in args]
    (tmp_path / "results").mkdir()
    (tmp_path / "board").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # (no sbatch, srun or anything else)
    before = tree(tmp_path)
    res = runner.invoke(app, ["sweep", str(grid), *args])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "Traceback" not in res.output
    for words in said:
        assert words.format(tmp=tmp_path) in " ".join(res.output.split())
    assert tree(tmp_path) == before
    assert not (tmp_path.parent / "X").exists() and not (tmp_path / "elsewhere").exists()


def test_a_grid_file_name_that_is_no_folder_name_is_made_one_and_said(tmp_path):
    grid = grid_file(tmp_path, name="tecoa vs clip (final).toml")
    res = runner.invoke(app, ["sweep", str(grid), "--dry-run"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "so the sweep is named 'tecoa-vs-clip-final-'" not in text  # (no trailing dash)
    assert "the sweep is named 'tecoa-vs-clip-final'" in text
    assert f"folder {tmp_path / 'results' / 'sweeps' / 'tecoa-vs-clip-final'}" in text


def _big_grid(tmp_path):
    eps = ", ".join(map(str, range(1, 127)))  # 2 defenses x 2 suites x 126 eps = 504 jobs
    return grid_file(tmp_path, GRID.replace('attacks = ["pgd", "cw"]', f'attacks = ["pgd", "cw"]\neps = [{eps}]'))


def test_a_large_sweep_asks_and_is_not_submitted_without_a_yes(tmp_path, monkeypatch):
    from zsrbench.cli import sweep as cli_sweep
    import zsrbench.evaluation.sweep as sw

    submitted = []
    monkeypatch.setattr(sw, "submit", lambda plan: submitted.append(len(plan.todo)) or [])
    monkeypatch.setattr(cli_sweep, "interactive", lambda: True)
    grid = _big_grid(tmp_path)
    no = runner.invoke(app, ["sweep", str(grid)], input="n\n")
    assert no.exit_code == 1 and "would submit 504 jobs (more than 500)" in no.output
    assert "nothing was submitted" in no.output and submitted == []
    yes = runner.invoke(app, ["sweep", str(grid), "--no-wait"], input="y\n")
    assert yes.exit_code == 0, yes.output
    assert submitted == [504]
    dry = runner.invoke(app, ["sweep", str(grid), "--dry-run"])  # (a dry run submits nothing: it only says so)
    assert dry.exit_code == 0 and "504 jobs is more than 500" in " ".join(dry.output.split())
    monkeypatch.setattr(cli_sweep, "interactive", lambda: False)
    told = runner.invoke(app, ["sweep", str(grid), "--no-wait", "--yes"])
    assert told.exit_code == 0, told.output
    assert submitted == [504, 504]
    small = runner.invoke(app, ["sweep", str(grid_file(tmp_path)), "--no-wait"])  # 4 jobs: no question
    assert small.exit_code == 0 and submitted == [504, 504, 4]


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


def test_a_job_with_other_settings_than_an_entry_is_not_skipped(tmp_path):
    """An entry of steps = 2 is skipped by a grid of steps = 2, never taken for a job of other settings (its
    variant: steps, seed, precision, ... make an entry of their own)."""
    from zsrbench.evaluation.runner import run

    run(RunConfig(defense="clip", protocol="synthetic", attacks=("pgd",), attack_params={"steps": 2}, jobs=1,
                  results_dir=str(tmp_path / "results"), leaderboard_dir=str(tmp_path / "board")), progress=False)
    one = GRID.replace('defenses = ["clip", "tecoa"]', 'defenses = ["clip"]').replace('["pgd", "cw"]', '["pgd"]')
    for settings, skipped in (("steps = 2", 1), ("steps = 3", 0), ("steps = 2\nseed = 5", 0),
                              ('steps = 2\nprecision = "bf16"', 0)):
        grid = grid_file(tmp_path, one.replace("steps = 2", settings))
        res = runner.invoke(app, ["sweep", str(grid), "--dry-run"])
        assert res.exit_code == 0, res.output
        assert f"1 jobs expanded, {skipped} skipped" in res.output, (settings, res.output)

