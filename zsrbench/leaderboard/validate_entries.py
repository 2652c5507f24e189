"""Checks of one leaderboard entry revision for ``zsrbench validate``: it validates against its schema, its history
is intact (the previous revision it names exists with the sha256 it names), a measured entry's numbers equal those
of the records it references, a reported entry names only datasets of its protocol; and the machine-local paths in
a measured entry's model fields and its records'."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from zsrbench.errors import ZsrError
from zsrbench.leaderboard.entries import REV_FILE_RE, read_entry, sha256_hex
from zsrbench.leaderboard.machine_local import local_paths
from zsrbench.leaderboard.schema import LeaderboardEntry, ResultRecord
from zsrbench.leaderboard.validate_records import check_record

MEAN_TOL = 1e-4  # per_dataset_mean is stored rounded to 4 decimals


def _short(value: str, width: int = 72) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def _safe_rel(base: Path, rel: str) -> Path | None:
    pp = PurePosixPath(rel)
    if pp.is_absolute() or ".." in pp.parts:
        return None
    return base / Path(*pp.parts)


def check_entry(path: Path, cache: dict[Path, tuple[ResultRecord | None, list[str]]] | None = None) -> list[str]:
    """Reasons the entry revision at ``path`` is bad (empty: good); machine-local paths are not checked here
    (see :func:`local_path_reasons`: only an entry's newest revision must be free of them)."""
    return checked_entry(path, {} if cache is None else cache)[1]


def local_path_reasons(entry: LeaderboardEntry, edir: Path,
                       cache: dict[Path, tuple[ResultRecord | None, list[str]]] | None = None) -> list[str]:
    """The machine-local paths in a measured entry's model fields and in those of the records it references,
    as one line per place (empty: none)."""
    if entry.kind != "measured" or entry.measured is None:
        return []
    cache = {} if cache is None else cache
    out = [f"entry model.{f} = {_short(v)!r}" for f, v in local_paths(entry.model)]
    by_field: dict[str, tuple[str, list[str]]] = {}
    for ds, m in entry.measured.datasets.items():
        rp = _safe_rel(edir, m.record.path)
        if rp is None:
            continue
        key = rp.resolve()
        if key not in cache:
            cache[key] = check_record(rp, m.record.sha256)
        record = cache[key][0]
        for f, v in local_paths(record.model) if record is not None else []:
            by_field.setdefault(f, (v, []))[1].append(ds)
    n = len(entry.measured.datasets)
    for f, (v, datasets) in by_field.items():
        which = f"all {n} records" if len(datasets) == n else ", ".join(datasets)
        out.append(f"records' model.{f}, e.g. {_short(v)!r}, in {which}")
    return out


def checked_entry(path: Path, cache: dict[Path, tuple[ResultRecord | None, list[str]]]
                  ) -> tuple[LeaderboardEntry | None, list[str]]:
    """The entry revision at ``path`` (None when it cannot be read) and the reasons it is bad (as
    :func:`check_entry`); ``cache`` holds the records checked so far, by resolved path."""
    try:
        entry = read_entry(path)
    except ZsrError as exc:
        return None, [str(exc).removeprefix(f"{path}: ")]
    reasons: list[str] = []
    edir = path.parent
    if entry.previous is None:
        if entry.revision > 1:
            reasons.append(f"revision {entry.revision} names no previous revision")
    else:
        prev = _safe_rel(edir, entry.previous.file)
        if prev is None or not REV_FILE_RE.match(prev.name) or int(REV_FILE_RE.match(prev.name).group(1)) != entry.previous.revision:  # type: ignore[union-attr]
            reasons.append(f"previous revision reference {entry.previous.file!r} is malformed")
        elif entry.previous.revision >= entry.revision:
            reasons.append(f"previous revision {entry.previous.revision} is not older than {entry.revision}")
        elif not prev.is_file():
            reasons.append(f"previous revision {entry.previous.file} is missing: history was deleted")
        elif sha256_hex(prev.read_bytes()) != entry.previous.sha256:
            reasons.append(f"previous revision {entry.previous.file} was changed after this revision was written "
                           "(sha256 differs)")
    if entry.kind == "measured":
        reasons += _check_measured(entry, edir, cache)
    elif entry.kind == "reported":
        reasons += _check_reported(entry)
    return entry, reasons


def _check_measured(entry: LeaderboardEntry, edir: Path, cache: dict) -> list[str]:
    assert entry.measured is not None
    out = []
    for ds, m in entry.measured.datasets.items():
        rp = _safe_rel(edir, m.record.path)
        sp = _safe_rel(edir, m.sidecar.path)
        if rp is None or sp is None:
            out.append(f"{ds}: file reference outside the entry directory")
            continue
        key = rp.resolve()
        if key not in cache:
            cache[key] = check_record(rp, m.record.sha256)
        record, reasons = cache[key]
        out += [f"{ds}: record {m.record.path}: {r}" for r in reasons]
        if record is None:
            continue
        if record.sidecar is None or rp.parent / record.sidecar.file != sp:
            out.append(f"{ds}: the entry's sidecar {m.sidecar.path} is not the record's")
        elif sp.is_file() and sha256_hex(sp.read_bytes()) != m.sidecar.sha256:
            out.append(f"{ds}: sidecar {m.sidecar.path} does not match the sha256 the entry names")
        p = record.protocol
        want = (entry.protocol.name, entry.protocol.version, entry.model.id, entry.suite, entry.eps_text,
                entry.protocol.subset, entry.protocol.variant, ds)
        have = (p.name, p.version, record.model.id, p.suite, p.eps_text, p.subset, p.variant, p.dataset)
        if want != have:
            out.append(f"{ds}: record {m.record.path} is of {have}, not of this entry {want}")
        if record.metrics != m.metrics:
            diffs = [k for k in type(m.metrics).model_fields if getattr(record.metrics, k) != getattr(m.metrics, k)]
            out.append(f"{ds}: the entry's metrics ({', '.join(diffs)}) differ from those of its record")
        if record.flags != m.flags:
            out.append(f"{ds}: the entry's warnings/fallbacks differ from those of its record")
    return out


def _check_reported(entry: LeaderboardEntry) -> list[str]:
    assert entry.reported is not None
    out = []
    known = set(entry.protocol.datasets)
    for metric in ("clean", "robust"):
        nums = getattr(entry.reported, metric)
        if nums is None:
            continue
        unknown = [d for d in nums.per_dataset if d not in known]
        if unknown:
            out.append(f"reported {metric}: {', '.join(unknown)} not datasets of protocol {entry.protocol.name}")
        if nums.per_dataset and nums.per_dataset_mean is not None:
            mean = sum(nums.per_dataset.values()) / len(nums.per_dataset)
            if abs(mean - nums.per_dataset_mean) > MEAN_TOL / 2 + 1e-9:
                out.append(f"reported {metric}: per_dataset_mean {nums.per_dataset_mean} is not the mean of "
                           f"per_dataset ({mean:.4f})")
    if entry.reported.clean is None and entry.reported.robust is None:
        out.append("a reported entry without any numbers")
    return out

