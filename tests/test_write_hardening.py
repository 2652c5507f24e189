"""Writes that fail half-way (a full disk, no permission, a name too long) leave nothing behind and say so;
``zsrbench validate`` finds what interrupted writes left; symlinked entry folders are validated; ``--worst-of``
with a suite the leaderboard lacks is an error.

Failures are injected by making one ``os`` call raise, the k-th time it is made on a file under the test's
folder; one test fills a real 64 KiB tmpfs (root only; skipped where ``mount`` is refused).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Callable

import pytest
from test_leaderboard import T0, T1, TOY_DATASETS, invoke, make, toy_reported, write

from zsrbench.errors import ZsrError
from zsrbench.leaderboard import atomic, records, store

ENTRY = "clip__ViT-B-32__openai__pgd__eps1__v1"
LONG = "a" * 300


# ------------------------------------------------------------------------------------------------ helpers
def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``, hidden ones included: folders as "dir", files by their sha256."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if atomic.is_temp_name(p.name)] if root.exists() else []


def _fd_path(fd: int) -> str | None:
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None  # a folder's fsync, a pipe
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def fail(monkeypatch, call: str, *, k: int = 1, err: int = errno.ENOSPC,
         match: Callable[[str], bool] = lambda p: True) -> dict[str, int]:
    """Make ``os.<call>`` raise ``OSError(err)`` the ``k``-th time it is made on a path ``match`` accepts
    (``fsync``/``write``: the file behind the descriptor; ``rename``/``replace``: the target)."""
    real = getattr(os, call)
    seen = {"n": 0}

    def fake(*args, **kwargs):
        target = _fd_path(args[0]) if call in ("fsync", "write") else os.fspath(args[1])
        if target is not None and match(target):
            seen["n"] += 1
            if seen["n"] == k:
                raise OSError(err, os.strerror(err), target)
        return real(*args, **kwargs)

    monkeypatch.setattr(os, call, fake)
    return seen


def under(root: Path, *parts: str) -> Callable[[str], bool]:
    return lambda p: p.startswith(str(root)) and all(x in p for x in parts)


def two_revisions_ready(tmp_path: Path):
    """A leaderboard with r0001 of one entry (3 datasets) and new records that make an r0002 (3 datasets)."""
    lb, res = tmp_path / "lb", tmp_path / "res"
    store.add_measured(lb, write(res / "a", *[make(dataset=d) for d in TOY_DATASETS]), now=T0)
    again = write(res / "b", *[make(dataset=d, robust=(9,), created_at=T1) for d in TOY_DATASETS])
    return lb, again


# ------------------------------------------------------------------------------------------------ revisions
FAULTS = {
    "fsync of the 2nd file": ("fsync", 2, errno.ENOSPC, ("r0002",)),
    "write of the 3rd file": ("write", 3, errno.ENOSPC, ("r0002",)),
    "the entry file's fsync": ("fsync", 1, errno.ENOSPC, (".r0002.json.",)),
    "the entry file's rename": ("replace", 1, errno.EROFS, ("r0002.json",)),
    "the folder's rename": ("rename", 1, errno.EACCES, ("r0002",)),
}
CAUSE_WORDS = {errno.ENOSPC: "the disk is full", errno.EROFS: "read-only", errno.EACCES: "permission denied"}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failed_revision_leaves_the_leaderboard_byte_identical(tmp_path, monkeypatch, fault):
    call, k, err, parts = FAULTS[fault]
    lb, again = two_revisions_ready(tmp_path)
    before = snapshot(lb)
    with monkeypatch.context() as m:
        seen = fail(m, call, k=k, err=err, match=under(lb, *parts))
        with pytest.raises(ZsrError) as exc:
            store.add_measured(lb, again, now=T1)
        assert seen["n"] >= k  # the fault did fire
    text = str(exc.value)
    assert str(lb / "toy" / ENTRY / "r0002.json") in text and CAUSE_WORDS[err] in text
    assert "--leaderboard-dir" in text and "no partial or temporary file was left" in text
    assert snapshot(lb) == before and temps(lb) == []
    assert invoke("validate", lb).exit_code == 0
    # the number was not used up: the same write, now on a healthy disk, gives r0002
    [path] = store.add_measured(lb, again, now=T1)
    assert path.name == "r0002.json" and invoke("validate", lb).exit_code == 0


def test_a_failed_first_revision_leaves_no_entry_folder(tmp_path, monkeypatch):
    lb, res = tmp_path / "lb", tmp_path / "res"
    made = write(res, make(dataset="shapes"))
    with monkeypatch.context() as m:
        fail(m, "fsync", k=1, match=under(lb, ".r0001.json."))
        with pytest.raises(ZsrError, match="disk is full"):
            store.add_measured(lb, made, now=T0)
    assert not lb.exists()  # not even empty folders

    store.add_measured(lb, made, now=T0)
    before = snapshot(lb)
    with monkeypatch.context() as m:  # a reported entry: no files, just the entry file
        fail(m, "write", k=1, match=under(lb, "reported__"))
        with pytest.raises(ZsrError, match="disk is full"):
            store.add_reported(lb, [toy_reported()], now=T0)
    assert snapshot(lb) == before


def test_an_unwritable_leaderboard_is_a_clear_error(tmp_path, monkeypatch):
    lb, again = two_revisions_ready(tmp_path)
    before = snapshot(lb)
    with monkeypatch.context() as m:
        fail(m, "write", k=2, err=errno.EDQUOT, match=under(lb))
        with pytest.raises(ZsrError, match="quota"):
            store.add_measured(lb, again, now=T1)
    assert snapshot(lb) == before
    with pytest.raises(ZsrError, match="too long.*--leaderboard-dir"):
        store.add_measured(tmp_path / LONG, again, now=T1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lb", "res"]


# ------------------------------------------------------------------------------------------------ result records
def test_a_failed_record_write_keeps_the_old_record_and_its_sidecar(tmp_path, monkeypatch):
    res = tmp_path / "res"
    [(path, _)] = write(res, make(dataset="shapes"))
    side = path.with_suffix(".flags.npz")
    before = snapshot(res)
    new = make(dataset="shapes", robust=(3,), created_at=T1)
    for call, k, err, parts in (("fsync", 2, errno.ENOSPC, ()), ("write", 2, errno.ENOSPC, ()),
                                ("replace", 1, errno.EACCES, ("shapes.json",))):
        with monkeypatch.context() as m:  # the sidecar is staged (or even in place) when the record fails
            fail(m, call, k=k, err=err, match=under(res, *parts))
            with pytest.raises(ZsrError) as exc:
                records.write_result(res, *new)
        assert str(path) in str(exc.value) and "--results-dir" in str(exc.value)
        assert snapshot(res) == before and temps(res) == [], call
        assert records.read_flags(path)["robust"].sum() == 8  # the old pair, still consistent
    assert invoke("validate", res).exit_code == 0
    assert side.exists()

    # a new record (new folders) that cannot be written: no folder, no orphan sidecar
    with monkeypatch.context() as m:
        fail(m, "write", k=2, match=under(res))
        with pytest.raises(ZsrError, match="disk is full"):
            records.write_result(res, *make("tecoa/ViT-B-32/1a2b3c", "colors"))
    assert snapshot(res) == before


def test_a_name_too_long_is_an_exit_2_error(tmp_path):
    with pytest.raises(ZsrError, match="name in the path is too long.*--results-dir"):
        records.write_result(tmp_path / LONG, *make())
    assert list(tmp_path.iterdir()) == []
    for args in (("table", "--results-dir", tmp_path / LONG), ("table", "--leaderboard-dir", tmp_path / LONG / "x"),
                 ("validate", tmp_path / LONG)):
        out = invoke(*args)
        assert out.exit_code == 2, out.output
        assert "too long" in out.output and "shorter path" in out.output and "Traceback" not in out.output


def test_table_output_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    lb, _ = two_revisions_ready(tmp_path)
    out_file = tmp_path / "out" / "table.csv"
    out_file.parent.mkdir()
    out_file.write_text("old\n")
    with monkeypatch.context() as m:
        fail(m, "write", k=1, match=under(out_file.parent))
        out = invoke("table", "--leaderboard-dir", lb, "--csv", "--output", out_file)
    assert out.exit_code == 2 and "disk is full" in out.output and "--output" in out.output
    assert out_file.read_text() == "old\n" and temps(out_file.parent) == []
    assert invoke("table", "--leaderboard-dir", lb, "--csv", "--output", out_file).exit_code == 0
    assert "clip/ViT-B-32/openai" in out_file.read_text()


def test_run_on_a_full_leaderboard_disk_exits_2_and_keeps_the_records(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from zsrbench.cli import app

    res, lb = tmp_path / "res", tmp_path / "lb"
    with monkeypatch.context() as m:
        fail(m, "fsync", k=1, match=under(lb, ".r0001.json."))
        out = CliRunner().invoke(app, ["run", "--protocol", "synthetic", "--datasets", "synthetic_shapes", "--steps",
                                       "1", "--n-samples", "8", "--quiet", "--results-dir", str(res),
                                       "--leaderboard-dir", str(lb)])
    assert out.exit_code == 2, out.output
    assert "disk is full" in out.output and "r0001.json" in out.output and "Traceback" not in out.output
    assert not lb.exists()
    assert invoke("validate", res).exit_code == 0 and len(list(res.rglob("*.json"))) == 1


# ------------------------------------------------------------------------------------------------ a real full disk
@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (root only); skipped where it cannot be mounted."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_really_full_disk(tiny_disk, tmp_path):
    lb, res = tiny_disk / "lb", tmp_path / "res"
    store.add_measured(lb, write(res / "a", make(dataset="shapes")), now=T0)
    big = write(res / "b", *[make(dataset=d, n=4000, robust=(900,), created_at=T1) for d in TOY_DATASETS])
    filler = tiny_disk / "filler"
    with open(filler, "wb") as f:  # leave less room than the three records need
        try:
            while True:
                f.write(b"\0" * 1024)
                f.flush()
                os.fsync(f.fileno())
                if shutil.disk_usage(tiny_disk).free < 12 * 1024:
                    break
        except OSError:
            pass
    before = snapshot(lb)
    with pytest.raises(ZsrError, match="disk is full"):
        store.add_measured(lb, big, now=T1)
    assert snapshot(lb) == before and temps(tiny_disk) == []
    filler.unlink()
    assert invoke("validate", lb).exit_code == 0
    with pytest.raises(ZsrError, match="too long"):  # and a name too long on this filesystem
        records.write_result(tiny_disk / LONG, *make())


# ------------------------------------------------------------------------------------------------ validate
def test_validate_reports_leftovers_of_interrupted_writes(tmp_path):
    lb, again = two_revisions_ready(tmp_path)
    store.add_measured(lb, again, now=T1)
    edir = lb / "toy" / ENTRY
    (edir / ".gitkeep").write_bytes(b"")  # hidden, not ours: fine
    assert invoke("validate", lb).exit_code == 0
    tmp_dir = edir / ".r0003.tmp-4242"
    tmp_dir.mkdir()
    (tmp_dir / "shapes.json").write_bytes(b"")
    (edir / ".r0003.json.4242.tmp").write_bytes(b"")
    (edir / "r0004").mkdir()
    (edir / "r0004" / "shapes.json").write_text("{}")
    (edir / ".r0002.json.4242.tmp-old").write_bytes(b"x")
    res = tmp_path / "res" / "c"
    [(rec, _)] = write(res, make(dataset="shapes"))
    orphan = rec.parent / "colors.flags.npz"
    orphan.write_bytes(rec.with_suffix(".flags.npz").read_bytes())
    empty = rec.parent / "digits.json"
    empty.write_bytes(b"")

    out = invoke("validate", tmp_path)
    assert out.exit_code == 1, out.output
    text = " ".join(out.output.split())
    for p in (tmp_dir, edir / ".r0003.json.4242.tmp", edir / "r0004", orphan, empty):
        assert f"leftover: {p}:" in text
    assert "a hidden temporary folder: the leftover of an interrupted write" in text and "can be deleted" in text
    assert "revision folder without its entry file r0004.json" in text and "No entry references it" in text
    assert "flags sidecar without a record that names it" in text and "an empty file (0 bytes)" in text
    assert "if r0002.json exists, this file can be deleted" in text
    assert "leftover(s) of interrupted writes" in text and ".gitkeep" not in text
    assert f"{tmp_dir / 'shapes.json'}" not in text  # the temporary folder is named once, not its contents
    assert str(edir / "r0004" / "shapes.json") in text  # a record in it is still checked (and is invalid)


def test_validate_says_a_referenced_revision_folder_must_not_be_deleted(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    store.add_measured(lb, write(res / "a", *[make(dataset=d) for d in TOY_DATASETS]), now=T0)
    store.add_measured(lb, write(res / "b", make(dataset="shapes", robust=(9,), created_at=T1)), now=T1)
    (lb / "toy" / ENTRY / "r0001.json").unlink()  # r0002 carries colors and digits from r0001/
    out = invoke("validate", lb)
    text = " ".join(out.output.split())
    assert out.exit_code == 1 and "restore r0001.json from version control (do not delete the folder)" in text


def test_validate_follows_symlinked_entry_folders(tmp_path):
    lb, again = two_revisions_ready(tmp_path)
    elsewhere = tmp_path / "elsewhere" / ENTRY
    elsewhere.parent.mkdir()
    shutil.move(lb / "toy" / ENTRY, elsewhere)
    (lb / "toy" / ENTRY).symlink_to(elsewhere, target_is_directory=True)
    (lb / "toy" / "loop").symlink_to(lb, target_is_directory=True)  # a cycle must not hang validate
    assert invoke("validate", lb).exit_code == 0
    (elsewhere / "r0002.json").write_text("garbage")
    table = invoke("table", "--leaderboard-dir", lb, "--csv")
    assert "r0002.json" in table.stderr  # table reads the linked entry …
    out = invoke("validate", lb)
    assert out.exit_code == 1 and "r0002.json" in out.output  # … and so does validate
    assert "not a readable JSON" in out.output


# ------------------------------------------------------------------------------------------------ --worst-of
def test_worst_of_a_suite_the_leaderboard_lacks_is_an_error(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    store.add_measured(lb, write(res, make(dataset="shapes")))
    store.add_measured(lb, write(res, make(dataset="shapes", attacks=("cw",))))
    out = invoke("table", "--leaderboard-dir", lb, "--worst-of", "pgd,aa-lite")
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "'aa-lite'" in text and "the suites measured are pgd, cw" in text
    assert "--worst-of pgd,cw" in text and "Traceback" not in text
    out = invoke("table", "--leaderboard-dir", lb, "--worst-of", "pgd,cw", "--eps", "4")
    assert out.exit_code == 2 and "has none with --eps 4" in " ".join(out.output.split())
    assert invoke("table", "--leaderboard-dir", lb, "--worst-of", "pgd,cw").exit_code == 0
