"""The versioned leaderboard store.

Layout (one directory per entry = model × attack suite × ε under one protocol version)::

    leaderboards/<protocol>/<entry>/r0001.json          the entry, revision 1 (pretty JSON, sorted keys)
    leaderboards/<protocol>/<entry>/r0001/<dataset>.json         copies of the runner's result records
    leaderboards/<protocol>/<entry>/r0001/<dataset>.flags.npz    and their per-sample flags
    leaderboards/<protocol>/<entry>/r0002.json          a later measurement: a new revision, r0001 untouched

Entry slugs: ``<model-slug>__<suite>__eps<k>__v<protocol version>`` for measured entries and
``reported__<method>__<suite>__eps<k>__<source>__v<protocol version>`` for published numbers.

Files are written once and never edited: a revision's files are complete before its ``rNNNN.json`` appears
(written last, atomically; if it cannot be written the revision's folder is removed again, so both appear or
neither, see ``zsrbench.leaderboard.atomic``), each revision carries the sha256 of the previous one, and a
``digest`` of its own content, so edits after the fact are detected by ``zsrbench validate``. Revision numbers
are taken under an exclusive lock on the entry's directory (``fcntl.flock``; an ``O_CREAT|O_EXCL`` lock file
where fcntl is missing), so concurrent writers never lose a revision.

Entry files and their names live in :mod:`.entries`, reading the store in :mod:`.reading`, the ``changes``
lines of a revision in :mod:`.changes`; their names stay importable from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

import zsrbench
from zsrbench import jsonio
from zsrbench.errors import ZsrError
from zsrbench.leaderboard import atomic
from zsrbench.leaderboard.changes import measured_changes, reported_changes
from zsrbench.leaderboard.entries import (
    REV_DIR_RE, EntryKey, check_flags, code_key, entry_json, entry_key, entry_model, measured_slug, measurement, now_utc,
    protocol_of, rev_name, revision_files, sha256_hex, with_digest,
)
from zsrbench.leaderboard.reading import _previous
from zsrbench.leaderboard.records import flags_from_bytes, parse_record
from zsrbench.leaderboard.schema import (
    AttackConfig, DatasetMeasurement, FileRef, LeaderboardEntry, MeasuredData, ResultRecord,
)

# the names that moved to .entries and .reading, importable from here as before (store.load_store, …)
from zsrbench.leaderboard.entries import (  # noqa: F401
    METRIC_TOL, REV_FILE_RE, content_digest, deviations, entry_dirs, eps_part, parse_entry, read_entry,
    reported_slug,
)
from zsrbench.leaderboard.reading import (  # noqa: F401
    AsOf, LoadedEntry, Previous, StoreView, entries_from_results, history, load_store, parse_as_of, parse_time,
    read_flags_ref, resolve_entry,
)


# --------------------------------------------------------------------------------------------------- revisions
def _taken_numbers(entry_dir: Path) -> list[int]:
    nums = [n for n, _ in revision_files(entry_dir)]
    for p in entry_dir.iterdir():
        m = REV_DIR_RE.match(p.name)
        if m and p.is_dir():
            nums.append(int(m.group(1)))
    return nums


@contextlib.contextmanager
def locked(directory: Path, timeout: float = 120.0) -> Iterator[None]:
    """An exclusive lock on ``directory`` (held while a revision number is taken and its files written)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None  # type: ignore[assignment]
    if fcntl is not None:
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError as exc:
            raise write_failed(directory, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return
    lock = directory / ".lock"  # pragma: no cover - Windows
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise ZsrError(f"{lock} has been held for {timeout:.0f} s; if no zsrbench is writing, delete it.")
            time.sleep(0.05)
    try:
        yield
    finally:
        os.unlink(lock)


LEADERBOARD_KEPT = "Nothing of this revision was written: its entry is as it was"


def write_failed(path: Path, exc: OSError) -> ZsrError:
    """The :class:`ZsrError` for a leaderboard write that failed (and was cleaned up)."""
    return atomic.user_error(path, exc, kept=LEADERBOARD_KEPT, option="--leaderboard-dir")


def _write_revision(entry_dir: Path, entry: LeaderboardEntry, files: dict[str, bytes]) -> Path:
    """Write the revision's files (into ``rNNNN/``) and then its entry file; both appear or neither (an OSError
    becomes a :class:`ZsrError`). Caller holds the lock."""
    rev = rev_name(entry.revision)
    path = entry_dir / f"{rev}.json"
    if path.exists() or (files and (entry_dir / rev).exists()):  # pragma: no cover - guarded by the lock
        raise ZsrError(f"{path} already exists; entries are never overwritten.")
    try:
        atomic.write_revision(entry_dir / rev, files, path, entry_json(with_digest(entry)).encode())
    except OSError as exc:
        raise write_failed(path, exc) from exc
    return path


def newest_readable(edir: Path) -> Previous:
    """The entry's newest revision, read; a :class:`ZsrError` (nothing written) when a revision file of it cannot
    be read (damaged, edited, hostile): a new revision is added only on top of a readable history."""
    prev = _previous(edir)
    if prev.note is not None:
        raise ZsrError(f"{edir}: {prev.note.split('; compared with')[0]}. Nothing was written: a new revision is added "
                       f"only on top of readable revisions. Run `zsrbench validate {edir}` and restore the file from "
                       "version control (entries are never edited), or write to another --leaderboard-dir.")
    return prev


@contextlib.contextmanager
def writing_entry(edir: Path) -> Iterator[None]:
    """Create the entry directory ``edir`` if needed and hold its lock; the folders made here are removed again
    when the block fails (a failed first revision leaves no empty entry directory behind)."""
    try:
        created = atomic.make_dirs(edir)
    except OSError as exc:
        raise write_failed(edir, exc) from exc
    try:
        with locked(edir):
            yield
    except BaseException:
        atomic.remove_empty(created)
        raise


# ---------------------------------------------------------------------------------------------------- measured
def _settings(record: ResultRecord) -> tuple[Any, ...]:
    p = record.protocol
    return (json.dumps([a.model_dump(mode="json") for a in p.attacks], sort_keys=True), p.precision, p.seed)


@dataclass
class _Loaded:
    path: Path
    record: ResultRecord
    blob: bytes
    sidecar_name: str
    sidecar_blob: bytes


def _load_result(path: Path, given: ResultRecord | None) -> _Loaded:
    """Read a runner's record from disk (the file wins over ``given``) and check its flags back its numbers."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ZsrError(f"{path}: cannot read the result record ({exc.strerror or exc}).") from exc
    record = parse_record(jsonio.parse(blob, path, "result record"), path)
    if given is not None and entry_key(given) + (given.protocol.dataset,) != entry_key(record) + (record.protocol.dataset,):
        raise ZsrError(f"{path}: the file on disk is not the record given for it (model, suite, ε or dataset differ).")
    if record.sidecar is None:
        raise ZsrError(f"{path}: the record names no flags sidecar; only records written by write_result can be added.")
    name = record.sidecar.file
    if "/" in name or "\\" in name or name.startswith("."):
        raise ZsrError(f"{path}: sidecar name {name!r} must be a plain file name next to the record.")
    try:
        side = (path.parent / name).read_bytes()
    except OSError as exc:
        raise ZsrError(f"{path}: its flags sidecar {name} cannot be read ({exc.strerror}).") from exc
    if sha256_hex(side) != record.sidecar.sha256:
        raise ZsrError(f"{path.parent / name}: sha256 differs from the one its record names.")
    problems = check_flags(record, flags_from_bytes(side, path.parent / name))
    if problems:
        raise ZsrError(f"{path}: refusing to add it to the leaderboard: {'; '.join(problems)}.")
    return _Loaded(path, record, blob, name, side)


OUTCOMES = ("added", "unchanged", "reproduced")


class AddedRevisions(list):
    """The revision files :func:`add_measured` returns (a ``list[Path]``, one per entry) and, in the parallel list
    ``outcomes``, what happened to each entry: ``"added"`` (a new revision), ``"unchanged"`` (the very records of
    the newest revision again) or ``"reproduced"`` (new records whose per-sample flags equal the newest
    revision's: nothing new was measured, so no revision is added)."""

    def __init__(self, paths: Sequence[Path] = (), outcomes: Sequence[str] = ()) -> None:
        super().__init__(paths)
        self.outcomes: list[str] = list(outcomes)

    def append_outcome(self, path: Path, outcome: str) -> None:
        assert outcome in OUTCOMES
        self.append(path)
        self.outcomes.append(outcome)


def add_measured(leaderboard_root: str | Path, results: Sequence[tuple[Path, ResultRecord]], *,
                 now: str | None = None, replace: bool = False) -> AddedRevisions:
    """Add the runner's results as new revisions of their leaderboard entries; returns the revision files.

    ``results`` are ``(record_path, record)`` pairs as returned by :func:`zsrbench.evaluation.runner.run`
    (``[(r.path, r.record) for r in run(cfg)]``). Records are grouped into entries (model × suite × ε × protocol
    version × subset × variant: an experiment never writes into the standard evaluation's entry); each entry gets
    one new revision holding copies of the records and their flags. The datasets of the newest revision that are
    not in ``results`` are carried over (referenced, not copied); when they were measured with other settings or
    other defense code they cannot be, and the entry is left as it is (a :class:`ZsrError`) unless ``replace``
    asks for a revision with only the new datasets.
    Adding exactly the records of the newest revision again adds nothing and returns that revision; so does a
    run that reproduces it (every new record's per-sample flags equal the newest revision's for the same
    dataset, attack settings, precision, seed and sample set). The returned list's ``outcomes`` say which.
    """
    root = Path(leaderboard_root)
    groups: dict[EntryKey, dict[str, _Loaded]] = {}
    for path, rec in results:
        item = _load_result(Path(path), rec)
        key = entry_key(item.record)
        ds = item.record.protocol.dataset
        if ds in groups.setdefault(key, {}):
            raise ZsrError(f"Two records for dataset {ds} of the same entry: {groups[key][ds].path} and {path}.")
        groups[key][ds] = item
    out = AddedRevisions()
    for key, items in groups.items():
        out.append_outcome(*_add_measured_entry(root, key, items, now=now, replace=replace))
    return out


FLAG_ARRAYS = ("labels", "clean_pred", "clean_correct", "robust")


def _same_flags(new: dict[str, np.ndarray], old: dict[str, np.ndarray], attacks: Sequence[str]) -> bool:
    """Per-sample flags equal array-wise: labels, predictions, clean and worst-case robustness, every attack's
    robustness, and the non-finite marks (a sidecar without them has none)."""
    for k in (*FLAG_ARRAYS, *(f"robust__{a}" for a in attacks)):
        if k not in new or k not in old or not np.array_equal(new[k], old[k]):
            return False
    for k in sorted({k for k in (*new, *old) if k.startswith("nonfinite")}):
        a, b = new.get(k), old.get(k)
        a = np.zeros_like(b) if a is None else a
        b = np.zeros_like(a) if b is None else b
        if not np.array_equal(a, b):
            return False
    return True


def _reproduces(edir: Path, pm: MeasuredData, new: dict[str, DatasetMeasurement], items: dict[str, _Loaded],
                attacks: Sequence[str]) -> bool:
    """Whether the new records measure exactly what the newest revision holds (same samples, same flags)."""
    for ds, m in new.items():
        old = pm.datasets.get(ds)
        if old is None or old.indices_digest != m.indices_digest or old.n_samples != m.n_samples:
            return False
        path = _inside(edir, old.sidecar.path)
        try:
            blob = path.read_bytes() if path is not None else None
        except OSError:
            blob = None
        if blob is None or sha256_hex(blob) != old.sidecar.sha256:
            return False  # the old flags are gone or changed: record the new measurement
        if not _same_flags(flags_from_bytes(items[ds].sidecar_blob, items[ds].path), flags_from_bytes(blob, path),
                           attacks):
            return False
    return True


def _not_carried(prev: LeaderboardEntry | None, record: ResultRecord) -> str | None:
    """Why the datasets of the entry's newest revision ``prev`` cannot stand beside ``record``'s in one revision
    (None: they can): other attack settings, precision or seed, or other defense code (a plugin's version)."""
    p = record.protocol
    return settings_differ(prev, p.attacks, p.precision, p.seed, record.model.origin)


def settings_differ(prev: LeaderboardEntry | None, attacks: Sequence[AttackConfig], precision: str, seed: int,
                    origin: dict[str, str] | None) -> str | None:
    """How a measurement with these settings differs from the measured entry revision ``prev`` (None: it does not,
    or there is no measured revision)."""
    pm = prev.measured if prev is not None else None
    if pm is None:
        return None
    if [a.model_dump(mode="json") for a in pm.attacks] != [a.model_dump(mode="json") for a in attacks]:
        return "other attack settings"
    if pm.precision != precision or pm.seed != seed:
        return f"precision {pm.precision} and seed {pm.seed} (this run: {precision}, seed {seed})"
    old, now = code_key(prev.model.origin), code_key(origin)  # type: ignore[union-attr]
    if old != now:
        return f"other defense code ({old or 'zsrbench'}; this run: {now or 'zsrbench'})"
    return None


def check_addable(leaderboard_root: str | Path, protocol: str, slug: str, datasets: Sequence[str],
                  attacks: Sequence[AttackConfig], precision: str, seed: int, origin: dict[str, str] | None) -> None:
    """Before a run: a :class:`ZsrError` when its records could not join entry ``slug`` (its newest revision holds
    other datasets measured with other settings or defense code), said before any work is done."""
    edir = Path(leaderboard_root) / protocol / slug
    if not revision_files(edir):
        return
    prev = newest_readable(edir)
    others = [d for d in (prev.entry.measured.datasets if prev.entry is not None and prev.entry.measured else {})
              if d not in datasets]
    why = settings_differ(prev.entry, attacks, precision, seed, origin) if others else None
    if why:
        raise ZsrError(
            f"{edir}: the entry's newest revision holds {', '.join(others)}, measured with {why}; this run would "
            f"measure {', '.join(datasets)}. An entry never loses a dataset silently: add those datasets to this run "
            "(--datasets), or pass --replace-entry to start a revision with only this run's datasets (or "
            "--no-leaderboard for records only).")


def _inside(base: Path, rel: str) -> Path | None:
    """``base/rel`` for a relative path that stays inside ``base`` (None otherwise)."""
    parts = Path(rel).parts
    if Path(rel).is_absolute() or ".." in parts:
        return None
    return base.joinpath(*parts)


def _add_measured_entry(root: Path, key: EntryKey, items: dict[str, _Loaded], *,
                        now: str | None, replace: bool = False) -> tuple[Path, str]:
    proto_name, version, model_id, suite, eps_text_, subset, variant = key
    first = next(iter(items.values())).record
    settings = {_settings(i.record) for i in items.values()}
    if len(settings) > 1:
        raise ZsrError(f"The records of {model_id} · {suite} · ε={eps_text_} were measured with different attack "
                       "settings, precision or seed; add them separately.")
    entry_slug = measured_slug(model_id, suite, eps_text_, version, subset, variant)
    edir = root / proto_name / entry_slug
    newest = max(items.values(), key=lambda i: i.record.created_at).record
    with writing_entry(edir):
        prev = newest_readable(edir)
        n = max(_taken_numbers(edir), default=0) + 1
        rev = rev_name(n)
        new: dict[str, DatasetMeasurement] = {}
        files: dict[str, bytes] = {}
        for ds, it in items.items():
            files[f"{ds}.json"] = it.blob
            files[it.sidecar_name] = it.sidecar_blob
            new[ds] = measurement(it.record, FileRef(path=f"{rev}/{ds}.json", sha256=sha256_hex(it.blob)),
                                  FileRef(path=f"{rev}/{it.sidecar_name}", sha256=sha256_hex(it.sidecar_blob)))
        pm = prev.entry.measured if prev.entry is not None and prev.entry.kind == "measured" else None
        attacks = list(first.protocol.attacks)
        others = [ds for ds in (pm.datasets if pm is not None else {}) if ds not in new]
        why = _not_carried(prev.entry, first)
        if why and others and not replace:
            raise ZsrError(
                f"{edir}: the entry's newest revision holds {', '.join(others)}, measured with {why}; this run "
                f"measured {', '.join(new)}. An entry never loses a dataset silently: run those datasets again with "
                "these settings (the entry then holds them all), or pass --replace-entry to start a revision with only "
                "this run's datasets. Nothing was added to the leaderboard; the result records are kept.")
        carried = [] if why else others
        dropped = others if why else []
        merged = {ds: pm.datasets[ds] for ds in carried} if pm is not None else {}
        merged.update(new)
        newest_valid = prev.path is not None and prev.note is None and prev.path == revision_files(edir)[-1][1]
        if pm is not None and why is None and newest_valid and set(new) <= set(pm.datasets):
            assert prev.path is not None
            if all(pm.datasets[ds].record.sha256 == m.record.sha256
                   and pm.datasets[ds].sidecar.sha256 == m.sidecar.sha256 for ds, m in new.items()):
                return prev.path, "unchanged"  # the same records again: nothing new to record
            if _reproduces(edir, pm, new, items, [a.name for a in attacks]):
                return prev.path, "reproduced"  # a re-run that measured exactly the same: nothing new either
        order = protocol_of(newest).datasets
        merged = dict(sorted(merged.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))
        changes = measured_changes(prev, new, carried, dropped, attacks, first.protocol.precision, first.protocol.seed,
                                   newest, why if dropped else None)
        entry = LeaderboardEntry(
            kind="measured", entry=entry_slug, revision=n, created_at=now or now_utc(), previous=prev.ref(),
            changes=changes, protocol=protocol_of(newest), model=entry_model(newest),
            suite=suite, eps=newest.protocol.eps, eps_text=eps_text_, zsrbench_version=zsrbench.__version__,
            measured=MeasuredData(attacks=attacks, precision=first.protocol.precision, seed=first.protocol.seed,
                                  datasets=merged),
        )
        return _write_revision(edir, entry, files), "added"


# ---------------------------------------------------------------------------------------------------- reported
def add_reported(leaderboard_root: str | Path, drafts: Sequence[LeaderboardEntry], *, now: str | None = None) -> list[Path]:
    """Add reported (published) entries. A draft equal to the newest revision adds nothing (re-imports are no-ops).

    ``revision``, ``created_at``, ``previous``, ``changes`` and ``digest`` of the drafts are filled in here.
    """
    root = Path(leaderboard_root)
    out = []
    for draft in drafts:
        if draft.kind != "reported" or draft.reported is None:
            raise ZsrError(f"add_reported takes reported entries; '{draft.entry}' is {draft.kind}.")
        edir = root / draft.protocol.name / draft.entry
        with writing_entry(edir):
            prev = newest_readable(edir)
            pe = prev.entry
            same = pe is not None and prev.note is None and all(
                getattr(pe, f) == getattr(draft, f) for f in ("kind", "protocol", "model", "suite", "eps", "eps_text",
                                                             "reported"))
            if same:
                assert prev.path is not None
                out.append(prev.path)
                continue
            n = max(_taken_numbers(edir), default=0) + 1
            entry = draft.model_copy(update={
                "revision": n, "created_at": now or now_utc(), "previous": prev.ref(),
                "changes": reported_changes(prev, draft), "zsrbench_version": zsrbench.__version__, "digest": ""})
            entry = LeaderboardEntry.model_validate(entry.model_dump())
            out.append(_write_revision(edir, entry, {}))
    return out
