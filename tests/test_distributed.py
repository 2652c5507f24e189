"""`zsrbench run --jobs`: datasets evaluated in parallel CPU processes give the records of one process."""

import json

import pytest

from zsrbench.cpu_jobs import parse_jobs, resolve_jobs
from zsrbench.errors import ZsrError
from zsrbench.runner import RunConfig, run


def test_parse_jobs():
    assert parse_jobs("auto") is None and parse_jobs(None) is None and parse_jobs(" AUTO ") is None
    assert parse_jobs("3") == 3 and parse_jobs(2) == 2
    for bad in ("0", "-1", "two"):
        with pytest.raises(ZsrError, match="--jobs"):
            parse_jobs(bad)


def test_resolve_jobs(monkeypatch):
    monkeypatch.delenv("ZSRBENCH_JOBS", raising=False)
    monkeypatch.setattr("zsrbench.cpu_jobs.usable_cores", lambda: 8)
    monkeypatch.setattr("zsrbench.cpu_jobs.available_memory", lambda: 10**12)
    assert resolve_jobs(None, "cpu", 16) == 8  # one per core
    assert resolve_jobs(None, "cpu", 3) == 3  # never more than datasets
    assert resolve_jobs(None, "cpu", 1) == 1
    assert resolve_jobs(None, "cuda", 16) == 1  # one process drives a GPU
    assert resolve_jobs(5, "cpu", 16) == 5 and resolve_jobs(5, "cpu", 2) == 2
    monkeypatch.setattr("zsrbench.cpu_jobs.available_memory", lambda: 10 * 8 * 10**9)
    assert resolve_jobs(None, "cpu", 16, model_bytes=10**9) == 8
    assert resolve_jobs(None, "cpu", 16, model_bytes=4 * 10**9) == 2  # free memory caps auto
    monkeypatch.setenv("ZSRBENCH_JOBS", "3")
    assert resolve_jobs(None, "cpu", 16) == 3
    with pytest.raises(ZsrError, match="--jobs 1"):
        resolve_jobs(4, "cuda", 16)


def _records(results):
    out = {}
    for r in results:
        rec = json.loads(r.path.read_text())
        out[rec["protocol"]["dataset"]] = (rec["model"]["id"], rec["metrics"], rec["protocol"]["indices_digest"])
    return out


def test_two_processes_give_the_records_of_one(tmp_path):
    base = RunConfig(defense="clip", protocol="synthetic", attacks=("pgd",), device="cpu", n_samples=12)
    one = run(RunConfig(**{**base.__dict__, "jobs": 1, "results_dir": str(tmp_path / "r1"),
                           "leaderboard_dir": str(tmp_path / "lb1")}), progress=False)
    lines: list[str] = []
    two = run(RunConfig(**{**base.__dict__, "jobs": 2, "results_dir": str(tmp_path / "r2"),
                           "leaderboard_dir": str(tmp_path / "lb2")}), progress=False, log=lines.append)
    assert [r.record.protocol.dataset for r in two] == ["synthetic_shapes", "synthetic_colors"]  # protocol order
    assert _records(one) == _records(two)
    assert any("2 processes" in line for line in lines)
    assert sorted(p.name for p in (tmp_path / "lb2" / "synthetic").iterdir()) == \
        sorted(p.name for p in (tmp_path / "lb1" / "synthetic").iterdir())


def test_a_bad_checkpoint_fails_before_any_process_starts(tmp_path):
    cfg = RunConfig(defense="clip", protocol="synthetic", attacks=("pgd",), device="cpu", n_samples=4, jobs=2,
                    checkpoint=str(tmp_path / "missing.pt"), results_dir=str(tmp_path / "r"))
    with pytest.raises(ZsrError):
        run(cfg, progress=False)
    assert not (tmp_path / "r").exists()
