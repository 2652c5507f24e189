"""Reading the leaderboard store: the entries as shown, as of a revision or a time, and one entry's history.

:func:`load_store` gives the newest revision of every entry (or the state at ``--as-of``, :func:`parse_as_of`)
with the bad files it skipped (:mod:`.board` adds the published numbers shipped with zsrbench: what
``zsrbench table`` shows); :func:`entries_from_results` builds the same view in memory from a raw results
directory; :func:`resolve_entry` finds the entry a user names, :func:`history` lists all its revisions and :func:`read_flags_ref` reads the per-sample
flags behind one of its datasets (sha256-checked). :class:`Previous` is the newest revision of an entry as the
writer of the next one sees it (:mod:`.store`). Nothing here writes.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

import zsrbench
from zsrbench import jsonio
from zsrbench.errors import ZsrError
from zsrbench.leaderboard import atomic
from zsrbench.leaderboard.entries import (
    REV_FILE_RE, EntryKey, entry_dirs, entry_key, entry_model, measured_slug, measurement, protocol_of, read_entry,
    rev_name, revision_files, sha256_hex,
)
from zsrbench.leaderboard.records import flags_from_bytes, parse_record, validation_message
from zsrbench.leaderboard.schema import (
    DatasetMeasurement, FileRef, LeaderboardEntry, MeasuredData, PreviousRevision, ResultRecord,
)


@dataclass
class LoadedEntry:
    """An entry as shown: the chosen revision, the directory its file references are relative to."""

    entry: LeaderboardEntry
    base: Path
    file: Path | None = None
    newest_revision: int | None = None


@dataclass
class StoreView:
    entries: list[LoadedEntry] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)  # bad files: (path, reason)
    notes: list[str] = field(default_factory=list)  # what was shown from elsewhere (the shipped reported numbers)


class EntryNotFound(ZsrError):
    """No leaderboard entry matches the name a user gave (as opposed to several matching it)."""


@dataclass(frozen=True)
class AsOf:
    revision: int | None = None
    time: datetime | None = None
    text: str = ""


def parse_as_of(text: str | None) -> AsOf | None:
    """``r0002`` / ``2`` (that revision of each entry, or the newest older one) or a date/time (UTC)."""
    if text is None:
        return None
    t = text.strip()
    m = re.fullmatch(r"r?(\d{1,6})", t)
    if m and not re.fullmatch(r"\d{8}", t):
        return AsOf(revision=int(m.group(1)), text=t)
    try:
        if re.fullmatch(r"\d{4}-?\d{2}-?\d{2}", t):
            t = t.replace("-", "")
            when = datetime.strptime(t, "%Y%m%d").replace(tzinfo=timezone.utc) + timedelta(days=1) - timedelta(microseconds=1)
        else:
            when = datetime.fromisoformat(t.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
    except ValueError:
        raise ZsrError(f"--as-of takes a revision (r0002 or 2) or a date/time (2025-06-01, 2025-06-01T12:00:00Z); "
                       f"got {text!r}.") from None
    return AsOf(time=when, text=t)


def parse_time(text: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def load_store(root: str | Path, protocol: str | None = None, as_of: AsOf | None = None) -> StoreView:
    """The entries of the leaderboard at ``root`` (newest revisions, or the state at ``as_of``).

    Bad files are reported in ``problems`` and skipped; an entry whose chosen revision is bad is not shown
    (an older revision is never silently shown in its place).
    """
    root = Path(root)
    if not atomic.probe(root, option="--leaderboard-dir"):
        raise ZsrError(f"No leaderboard at {root}: pass --leaderboard-dir DIR (or --results-dir DIR for raw results). "
                       "Without --leaderboard-dir, zsrbench reads $ZSRBENCH_HOME/leaderboards (else ./leaderboards) "
                       "and shows the published numbers shipped with it while that folder has none.")
    view = StoreView()
    for edir in entry_dirs(root, protocol):
        revs = revision_files(edir)
        parsed: list[tuple[int, Path, LeaderboardEntry | None]] = []
        for n, p in revs:
            try:
                parsed.append((n, p, read_entry(p)))
            except ZsrError as exc:
                view.problems.append((p, str(exc).removeprefix(f"{p}: ")))
                parsed.append((n, p, None))
        if as_of is None:
            chosen = parsed[-1]
        elif as_of.revision is not None:
            older = [x for x in parsed if x[0] <= as_of.revision]
            if not older:
                continue
            chosen = older[-1]
        else:
            assert as_of.time is not None
            older = [x for x in parsed if x[2] is not None and (parse_time(x[2].created_at) or as_of.time) <= as_of.time]
            if not older:
                continue
            chosen = older[-1]
        if chosen[2] is None:
            continue  # named in problems; not replaced by an older revision
        view.entries.append(LoadedEntry(chosen[2], edir, chosen[1], revs[-1][0]))
    return view


def entries_from_results(results_dir: str | Path, protocol: str | None = None) -> StoreView:
    """In-memory measured entries built from a raw results directory (``zsrbench table --results-dir``)."""
    root = Path(results_dir)
    if not atomic.probe(root, option="--results-dir"):
        raise ZsrError(f"Results directory {root} does not exist; pass the folder `zsrbench run --results-dir` "
                       "wrote to.")
    view = StoreView()
    groups: dict[EntryKey, list[tuple[Path, ResultRecord, str]]] = {}
    base = root
    for path in sorted(root.rglob("*.json")):
        if path.name.endswith(".schema.json"):
            continue
        try:
            blob = path.read_bytes()
            data = jsonio.parse(blob, path, "result record")
            if isinstance(data, dict) and data.get("kind") == "attention_shift":
                continue  # an attention-shift record of `zsrbench attention`, not a result record
            record = parse_record(data, path)
        except (OSError, ValueError, ZsrError) as exc:
            view.problems.append((path, str(exc).removeprefix(f"{path}: ")))
            continue
        if protocol and record.protocol.name != protocol:
            continue
        if record.sidecar is None:
            view.problems.append((path, "the record names no flags sidecar"))
            continue
        groups.setdefault(entry_key(record), []).append((path, record, sha256_hex(blob)))
    for key, items in groups.items():
        proto_name, version, model_id, suite, eps_text_, subset, variant = key
        newest = max(items, key=lambda t: t[1].created_at)[1]
        datasets: dict[str, DatasetMeasurement] = {}
        order = protocol_of(newest).datasets
        for path, record, sha in sorted(items, key=lambda t: (t[1].protocol.dataset not in order,
                                                             order.index(t[1].protocol.dataset)
                                                             if t[1].protocol.dataset in order else 0)):
            assert record.sidecar is not None
            rel = path.relative_to(base)
            datasets[record.protocol.dataset] = measurement(
                record, FileRef(path=rel.as_posix(), sha256=sha),
                FileRef(path=(rel.parent / record.sidecar.file).as_posix(), sha256=record.sidecar.sha256))
        try:
            entry = LeaderboardEntry(
                kind="measured", entry=measured_slug(model_id, suite, eps_text_, version, subset, variant),
                revision=1, created_at=newest.created_at, protocol=protocol_of(newest), model=entry_model(newest),
                suite=suite, eps=newest.protocol.eps, eps_text=eps_text_, zsrbench_version=zsrbench.__version__,
                measured=MeasuredData(attacks=list(newest.protocol.attacks), precision=newest.protocol.precision,
                                      seed=newest.protocol.seed, datasets=datasets))
        except ValidationError as exc:  # pragma: no cover - records were valid one by one
            view.problems.append((items[0][0], validation_message(exc)))
            continue
        view.entries.append(LoadedEntry(entry, base, None, None))
    return view


def resolve_entry(root: str | Path, name: str) -> tuple[Path, int | None]:
    """The entry directory named by ``name`` (slug, ``protocol/slug``, unique part of a slug or a path) and the
    revision asked for with ``@r0002`` / a revision file path (None: the newest)."""
    revision = None
    m = re.fullmatch(r"(.+)@r?(\d+)", name)
    if m:
        name, revision = m.group(1), int(m.group(2))
    p = Path(name)
    fm = REV_FILE_RE.match(p.name)
    if p.is_file() and fm:
        return p.parent, int(fm.group(1)) if revision is None else revision
    if p.is_dir() and revision_files(p):
        return p, revision
    dirs = entry_dirs(root) if Path(root).is_dir() else []
    if not dirs:
        raise EntryNotFound(f"No leaderboard entries under {root}; pass --leaderboard-dir DIR.")
    return _match(name, {f"{d.parent.name}/{d.name}": d for d in dirs}, f"under {root}"), revision


def _match(name: str, keys: dict[str, Any], where: str) -> Any:
    """The value of the one key (``protocol/slug``) that ``name`` names: exactly (slug or key), else as a
    unique case-insensitive part; a clear error for none or several."""
    slugs = {k: k.split("/", 1)[-1] for k in keys}
    exact = [v for k, v in keys.items() if name in (k, slugs[k])]
    if len(exact) == 1:
        return exact[0]
    hits = [k for k in keys if name in (k, slugs[k])] or [k for k in keys if name.lower() in k.lower()]
    if len(hits) == 1:
        return keys[hits[0]]
    if not hits:
        close = difflib.get_close_matches(name, list(slugs.values()), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else " `zsrbench table` lists the entries."
        raise EntryNotFound(f"No leaderboard entry matches '{name}' {where}.{hint}")
    listed = "\n  ".join(hits[:12])
    raise ZsrError(f"'{name}' matches {len(hits)} entries; be more specific:\n  {listed}")


def history(entry_dir: Path) -> list[tuple[int, Path, LeaderboardEntry | ZsrError]]:
    out: list[tuple[int, Path, LeaderboardEntry | ZsrError]] = []
    for n, p in revision_files(entry_dir):
        try:
            out.append((n, p, read_entry(p)))
        except ZsrError as exc:
            out.append((n, p, exc))
    return out


def read_flags_ref(loaded: LoadedEntry, m: DatasetMeasurement) -> dict[str, np.ndarray]:
    """The per-sample flags behind one dataset of an entry (sha256-checked)."""
    path = loaded.base / m.sidecar.path
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ZsrError(f"{path}: flags file missing ({exc.strerror}).") from exc
    if sha256_hex(blob) != m.sidecar.sha256:
        raise ZsrError(f"{path}: sha256 differs from the one the entry names.")
    return flags_from_bytes(blob, path)


# ------------------------------------------------------------------------------- the revision before a new one
@dataclass
class Previous:
    number: int  # of the newest revision file (0: none)
    path: Path | None
    entry: LeaderboardEntry | None  # the newest *valid* revision
    note: str | None = None  # why the newest file could not be used

    def ref(self) -> PreviousRevision | None:
        if self.path is None:
            return None
        return PreviousRevision(revision=self.number, file=self.path.name, sha256=sha256_hex(self.path.read_bytes()))


def _previous(entry_dir: Path) -> Previous:
    revs = revision_files(entry_dir)
    if not revs:
        return Previous(0, None, None)
    n, path = revs[-1]
    note = None
    for k, p in reversed(revs):
        try:
            return Previous(n, path, read_entry(p), note)
        except ZsrError as exc:
            note = note or f"{rev_name(k)} is invalid ({exc}); compared with the newest valid revision"
    return Previous(n, path, None, "no valid previous revision")
