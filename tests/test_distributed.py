"""Scale-out: work units spread over torch.distributed ranks (`torchrun`, `--jobs`) give the flags of one process,
and a run killed in the middle of a dataset resumes from its finished units."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from zsrbench.evaluation.ranks import parse_jobs, resolve_jobs
from zsrbench.errors import ZsrError
from zsrbench.evaluation.config import RunConfig
from zsrbench.evaluation.runner import run


def test_parse_jobs():
    assert parse_jobs("auto") is None and parse_jobs(None) is None and parse_jobs(" AUTO ") is None
    assert parse_jobs("3") == 3 and parse_jobs(2) == 2
    for bad in ("0", "-1", "two"):
        with pytest.raises(ZsrError, match="--jobs"):
            parse_jobs(bad)


def test_resolve_jobs(monkeypatch):
    monkeypatch.delenv("ZSRBENCH_JOBS", raising=False)
    monkeypatch.setattr("zsrbench.evaluation.ranks.usable_cores", lambda: 8)
    monkeypatch.setattr("zsrbench.evaluation.ranks.available_memory", lambda: 10**12)
    assert resolve_jobs(None, "cpu", 16) == 8  # one per core
    assert resolve_jobs(None, "cpu", 3) == 3  # never more than work units
    assert resolve_jobs(None, "cpu", 1) == 1
    assert resolve_jobs(None, "cuda", 16) == 1  # one process drives a GPU (torchrun for several)
    assert resolve_jobs(5, "cpu", 16) == 5
    with pytest.raises(ZsrError, match="more processes than the run has work units"):
        resolve_jobs(5, "cpu", 2)
    monkeypatch.setattr("zsrbench.evaluation.ranks.available_memory", lambda: 10 * 8 * 10**9)
    assert resolve_jobs(None, "cpu", 16, model_bytes=10**9) == 8
    assert resolve_jobs(None, "cpu", 16, model_bytes=4 * 10**9) == 2  # free memory caps auto
    monkeypatch.setenv("ZSRBENCH_JOBS", "3")
    assert resolve_jobs(None, "cpu", 16) == 3
    with pytest.raises(ZsrError, match="torchrun"):
        resolve_jobs(4, "cuda", 16)


def _records(results):
    out = {}
    for r in results:
        rec = json.loads(r.path.read_text())
        out[rec["protocol"]["dataset"]] = (rec["model"]["id"], rec["metrics"], rec["protocol"]["indices_digest"])
    return out


def test_two_processes_give_the_records_of_one(tmp_path):
    base = RunConfig(defense="clip", protocol="synthetic", attacks=("pgd",), device="cpu", n_samples=12, batch_size=4)
    one = run(RunConfig(**{**base.__dict__, "jobs": 1, "results_dir": str(tmp_path / "r1"),
                           "leaderboard_dir": str(tmp_path / "lb1")}), progress=False)
    lines: list[str] = []
    two = run(RunConfig(**{**base.__dict__, "jobs": 2, "results_dir": str(tmp_path / "r2"),
                           "leaderboard_dir": str(tmp_path / "lb2")}), progress=False, log=lines.append)
    assert [r.record.protocol.dataset for r in two] == ["synthetic_shapes", "synthetic_colors"]  # protocol order
    assert _records(one) == _records(two)
    assert any("6 work units in 2 processes" in line for line in lines)
    assert sorted(p.name for p in (tmp_path / "lb2" / "synthetic").iterdir()) == \
        sorted(p.name for p in (tmp_path / "lb1" / "synthetic").iterdir())


def test_a_bad_checkpoint_fails_before_any_process_starts(tmp_path):
    cfg = RunConfig(defense="clip", protocol="synthetic", attacks=("pgd",), device="cpu", n_samples=4, jobs=2,
                    checkpoint=str(tmp_path / "missing.pt"), results_dir=str(tmp_path / "r"))
    with pytest.raises(ZsrError):
        run(cfg, progress=False)
    assert not (tmp_path / "r").exists()



# ------------------------------------------------------------------------------------ --jobs: loopback only
def _listening(table):
    """{socket inode: (local address, port)} of the LISTEN sockets in /proc/net/tcp or /proc/net/tcp6."""
    import ipaddress

    out = {}
    try:
        lines = open(f"/proc/net/{table}").read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":  # 0A: TCP_LISTEN
            continue
        hexaddr, hexport = fields[1].split(":")
        raw = bytes.fromhex(hexaddr)
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is little-endian
        out[fields[9]] = (ipaddress.ip_address(raw), int(hexport, 16))
    return out


def _family(pid):
    """``pid`` and its descendants (read from /proc)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parents[int(name)] = int(open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, todo = {pid}, [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in found]
        found.update(kids)
        todo += kids
    return found


def _socket_inodes(pid):
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _is_loopback(addr):
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or (mapped is not None and mapped.is_loopback)


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's /proc/net/tcp")
def test_jobs_listens_on_the_loopback_interface_only(tmp_path):
    """While the ranks of `--jobs 2` run, every TCP socket that the launching process or a rank listens on is
    bound to 127.0.0.1 or ::1 (torch.distributed's stores are unauthenticated)."""
    import threading

    me = os.getpid()
    earlier = {i for p in _family(me) for i in _socket_inodes(p)}
    seen, stop = {}, threading.Event()

    def watch():
        while not stop.is_set():
            listening = {**_listening("tcp"), **_listening("tcp6")}
            for pid in _family(me):
                for inode in _socket_inodes(pid) - earlier:
                    if inode in listening:
                        seen[inode] = (pid, *listening[inode])
            stop.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    cfg = RunConfig(defense="clip", protocol="synthetic", attacks=("pgd",), device="cpu", n_samples=16, batch_size=4,
                    jobs=2, results_dir=str(tmp_path / "r"), leaderboard_dir=None)
    try:
        results = run(cfg, progress=False)
    finally:
        stop.set()
        watcher.join()
    assert len(results) == 2
    assert any(pid != me for pid, _, _ in seen.values()), f"no socket of a rank was seen: {seen}"  # (the watch worked)
    wide = {f"{addr}:{port} (pid {pid}{', the launcher' if pid == me else ''})" for pid, addr, port in seen.values()
            if not _is_loopback(addr)}
    assert not wide, f"sockets of the run listen beyond the loopback interface: {sorted(wide)}"


# ------------------------------------------------------------------------------------------------- torchrun
ARGS = ["run", "--protocol", "synthetic", "--attack", "pgd,cw", "--steps", "2", "--n-samples", "12", "--batch-size",
        "4", "--quiet"]


def _flags(results_dir):
    from zsrbench.leaderboard.records import read_flags

    return {f.name: read_flags(f) for f in sorted(results_dir.rglob("*.json")) if f.parent.name != "units"}


def _same_flags(a, b):
    assert a.keys() == b.keys() and a
    for name in a:
        assert a[name].keys() == b[name].keys()
        assert all(np.array_equal(a[name][k], b[name][k]) for k in a[name]), name


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "ZSRBENCH_JOBS": "1"}


def test_torchrun_two_ranks_give_the_flags_and_records_of_one_process(tmp_path):
    one = subprocess.run([sys.executable, "-m", "zsrbench", *ARGS, "--results-dir", str(tmp_path / "r1"),
                          "--leaderboard-dir", str(tmp_path / "l1")], env=_env(), capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "zsrbench", *ARGS, "--results-dir", str(tmp_path / "r2"), "--leaderboard-dir",
                          str(tmp_path / "l2")], env=_env(), capture_output=True, text=True)
    assert two.returncode == 0, two.stderr
    _same_flags(_flags(tmp_path / "r1"), _flags(tmp_path / "r2"))
    for f in (tmp_path / "r1").rglob("*.json"):
        a, b = json.loads(f.read_text()), json.loads((tmp_path / "r2" / f.relative_to(tmp_path / "r1")).read_text())
        assert a["metrics"] == b["metrics"] and a["protocol"] == b["protocol"] and a["model"] == b["model"]
    assert [p.name for p in (tmp_path / "l2" / "synthetic").iterdir()] == \
        [p.name for p in (tmp_path / "l1" / "synthetic").iterdir()]
    assert not list((tmp_path / "r2").rglob("*.units"))  # units are gone once their record is written


def test_more_ranks_than_units_is_an_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3",
                          "-m", "zsrbench", "run", "--protocol", "synthetic", "--datasets", "synthetic_shapes",
                          "--n-samples", "8", "--batch-size", "4", "--steps", "1", "--quiet", "--results-dir",
                          str(tmp_path / "r"), "--leaderboard-dir", str(tmp_path / "l")],
                         env=_env(), capture_output=True, text=True)
    assert res.returncode != 0  # (torchrun reports its failed ranks in its own words after theirs)
    assert "This run has 2 work units (batches of its datasets) but was started with 3 ranks" in \
        " ".join(res.stderr.split())
    assert not (tmp_path / "r").exists() and not (tmp_path / "l").exists()


def test_more_jobs_than_units_is_an_error_before_any_process_starts(tmp_path):
    from typer.testing import CliRunner

    from zsrbench.cli import app

    res = CliRunner().invoke(app, ["run", "--protocol", "synthetic", "--datasets", "synthetic_shapes", "--n-samples",
                                   "8", "--batch-size", "4", "--jobs", "3", "--quiet", "--results-dir",
                                   str(tmp_path / "r"), "--leaderboard-dir", str(tmp_path / "l")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "more processes than the run has work units (2" in " ".join(res.output.split())
    assert not (tmp_path / "r").exists() and not (tmp_path / "l").exists()


def test_kill_9_mid_dataset_resumes_from_its_finished_units(tmp_path):
    """Killed in the middle of a dataset, a run resumed with --resume re-evaluates only units not on disk."""
    args = ["run", "--protocol", "synthetic", "--datasets", "synthetic_shapes", "--attack", "pgd", "--steps", "40",
            "--n-samples", "24", "--batch-size", "2", "--no-leaderboard", "--jobs", "1"]
    ref = subprocess.run([sys.executable, "-m", "zsrbench", *args, "--quiet", "--results-dir", str(tmp_path / "ref")],
                         env=_env(), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "zsrbench", *args, "--quiet", "--results-dir", str(out)],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(out.rglob("u*.npz"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(out.rglob("u*.npz")))
    assert 3 <= finished < 12 and not list(out.rglob("*.json"))  # killed in the middle of the dataset
    from typer.testing import CliRunner

    from zsrbench.cli import app

    checked = CliRunner().invoke(app, ["validate", str(out)])
    assert checked.exit_code == 0 and "with --resume to complete it" in " ".join(checked.output.split())
    resumed = subprocess.run([sys.executable, "-m", "zsrbench", *args, "--resume", "--results-dir", str(out)],
                             env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    text = " ".join((resumed.stdout + resumed.stderr).split())  # progress lines are on standard error
    taken = int(text.split(" of 12 units already evaluated")[0].rsplit(" ", 1)[-1])
    assert taken == finished  # every unit on disk at the kill was reused: only the one in flight is redone
    _same_flags(_flags(tmp_path / "ref"), _flags(out))


def test_fork_is_taken_only_where_a_forked_child_can_run_parallel_regions():
    """A process that never ran an OpenMP pool forks its ranks; one whose pool ran (the child would hang at its
    first parallel region) spawns them, after a probe of at most FORK_PROBE_SECONDS; a GPU run always spawns."""
    code = ("import torch\nfrom zsrbench.evaluation.ranks import start_method\n"
            "torch.set_num_threads(1); torch.ones(1 << 20).mul_(2).sum()\n"
            "print(start_method('cpu', 2), start_method('cuda', 2))\n"
            "torch.set_num_threads(2); torch.ones(1 << 20).mul_(2).sum()\n"
            "print(start_method('cpu', 2))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["fork", "spawn", "spawn"]


FORK_RUN = """
import sys
import zsrbench.evaluation.ranks as ranks
chosen = ranks.start_method
def start_method(device, threads):
    method = chosen(device, threads)
    print("START", method, flush=True)
    return method
ranks.start_method = start_method
from zsrbench.cli.app import main
sys.argv = ["zsrbench", "run", "--defense", "clip", "--protocol", "synthetic", "--attack", "pgd", "--device", "cpu",
            "--n-samples", "12", "--batch-size", "4", "--jobs", "2", "--results-dir", sys.argv[1],
            "--leaderboard-dir", sys.argv[2], "-q"]
main()
"""


def test_a_command_line_run_forks_its_ranks_and_gives_the_records_of_one_process(tmp_path):
    """`zsrbench run --jobs 2` prepares on one thread, forks its ranks (no second import of torch) and gives the
    records of one process, bit for bit."""
    base = RunConfig(defense="clip", protocol="synthetic", attacks=("pgd",), device="cpu", n_samples=12, batch_size=4)
    one = run(RunConfig(**{**base.__dict__, "jobs": 1, "results_dir": str(tmp_path / "r1"),
                           "leaderboard_dir": str(tmp_path / "lb1")}), progress=False)
    out = subprocess.run([sys.executable, "-c", FORK_RUN, str(tmp_path / "r2"), str(tmp_path / "lb2")],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "START fork" in out.stdout
    two = {}
    for path in (tmp_path / "r2").rglob("*.json"):
        rec = json.loads(path.read_text())
        two[rec["protocol"]["dataset"]] = (rec["model"]["id"], rec["metrics"], rec["protocol"]["indices_digest"],
                                           rec["flags"])
    assert {k: (*v, json.loads(next(r.path for r in one if r.record.protocol.dataset == k).read_text())["flags"])
            for k, v in _records(one).items()} == two
