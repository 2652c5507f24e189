"""Leaderboard entries as files: their names, their JSON, where their revisions lie, and their parts.

Entry slugs and revision names; the canonical JSON of an entry and its ``digest``; parsing and checking one
entry file (migrated, validated, digest and place in the store checked); listing an entry's revision files
and the entry directories of a store; and the parts of a measured entry built from the runner's result records
(its protocol, one dataset's measurement with its deviations from the protocol, the entry a record belongs to,
and the check that a record's per-sample flags back its numbers). Nothing here writes: :mod:`.store` adds
revisions, :mod:`.reading` shows them.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from zsrbench.errors import ZsrError
from zsrbench.leaderboard.migrate import migrate
from zsrbench.leaderboard.records import eps_dir, metrics_from_flags, slug, validation_message
from zsrbench.leaderboard.schema import (
    DatasetMeasurement, EntryModel, EntryProtocol, FileRef, LeaderboardEntry, ResultRecord, read_json,
)

REV_FILE_RE = re.compile(r"^r(\d{4,})\.json$")
REV_DIR_RE = re.compile(r"^r(\d{4,})$")
METRIC_TOL = 1e-9


# ---------------------------------------------------------------------------------------------------- names
def rev_name(n: int) -> str:
    return f"r{n:04d}"


def eps_part(eps_text: str | None) -> str:
    return eps_dir(eps_text) if eps_text else "clean"


def measured_slug(model_id: str, suite: str, eps_text: str, protocol_version: int, subset: str | None = None,
                  variant: str | None = None) -> str:
    """``<model>__<suite>__eps<k>__v<version>``, then ``__<subset>`` for a named subset and ``__variant-<name>``
    for an experiment (settings other than the protocol's standard evaluation)."""
    tail = (f"__{slug(subset)}" if subset else "") + (f"__variant-{slug(variant)}" if variant else "")
    return f"{slug(model_id)}__{slug(suite)}__{eps_part(eps_text)}__v{protocol_version}{tail}"


def reported_slug(method: str, suite: str, eps_text: str | None, source_id: str, protocol_version: int) -> str:
    method = method.replace("β", "beta").replace(" = ", "").replace("=", "")
    return f"reported__{slug(method)}__{slug(suite)}__{eps_part(eps_text)}__{slug(source_id)}__v{protocol_version}"


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256_hex(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


# ---------------------------------------------------------------------------------------------------- JSON
def content_digest(data: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``data`` without its ``digest`` field."""
    body = {k: v for k, v in data.items() if k != "digest"}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def with_digest(entry: LeaderboardEntry) -> LeaderboardEntry:
    data = entry.model_dump(mode="json")
    return entry.model_copy(update={"digest": content_digest(data)})


def entry_json(entry: LeaderboardEntry) -> str:
    """Pretty JSON, readable in a diff: fields in schema order (stable), datasets in the protocol's column order."""
    return json.dumps(entry.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def parse_entry(data: Any, path: str | Path = "<entry>", *, check_location: bool = True) -> LeaderboardEntry:
    """A parsed entry file, migrated and validated; its digest and its place in the store are checked."""
    path = Path(path)
    try:
        version_data = migrate(data, "entry")
    except ZsrError as exc:
        raise ZsrError(f"{path}: {exc}") from exc
    try:
        entry = LeaderboardEntry.model_validate(version_data)
    except ValidationError as exc:
        raise ZsrError(f"{path}: invalid leaderboard entry: {validation_message(exc)}.") from exc
    if isinstance(data, dict) and data.get("schema_version") == entry.schema_version:
        digest = content_digest(data)
        if data.get("digest") != digest:
            raise ZsrError(
                f"{path}: content does not match its digest: the file was edited after it was written. Entries "
                "are immutable; restore it from version control and record a change as a new revision."
            )
    if check_location:
        m = REV_FILE_RE.match(path.name)
        if m and int(m.group(1)) != entry.revision:
            raise ZsrError(f"{path}: says revision {entry.revision} but is named {path.name}.")
        if m and path.parent.name != entry.entry:
            raise ZsrError(f"{path}: belongs to entry '{entry.entry}' but lies in directory '{path.parent.name}'.")
        if m and path.parent.parent.name != entry.protocol.name:
            raise ZsrError(
                f"{path}: is an entry of protocol '{entry.protocol.name}' but lies under '{path.parent.parent.name}/'."
            )
    return entry


def read_entry(path: str | Path, *, check_location: bool = True) -> LeaderboardEntry:
    path = Path(path)
    return parse_entry(read_json(path, "leaderboard entry"), path, check_location=check_location)


# ---------------------------------------------------------------------------------------------------- layout
def revision_files(entry_dir: Path) -> list[tuple[int, Path]]:
    out = []
    if entry_dir.is_dir():
        for p in entry_dir.iterdir():
            m = REV_FILE_RE.match(p.name)
            if m and p.is_file():
                out.append((int(m.group(1)), p))
    return sorted(out)


def entry_dirs(root: str | Path, protocol: str | None = None) -> list[Path]:
    """Directories holding at least one revision file, under ``root/<protocol>/``."""
    root = Path(root)
    protos = [root / protocol] if protocol else sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    out = []
    for pd in protos:
        if not pd.is_dir():
            continue
        for ed in sorted(pd.iterdir()):
            if ed.is_dir() and not ed.name.startswith(".") and revision_files(ed):
                out.append(ed)
    return out


# ------------------------------------------------------------------------------------------------ from records
def check_flags(record: ResultRecord, flags: dict[str, np.ndarray]) -> list[str]:
    """Reasons the per-sample flags do not back the record's numbers (empty when they do)."""
    attacks = [a.name for a in record.protocol.attacks]
    need = ["labels", "clean_pred", "clean_correct", "robust", *[f"robust__{a}" for a in attacks]]
    missing = [k for k in need if k not in flags]
    if missing:
        return [f"flags lack the arrays {', '.join(missing)}"]
    n = int(flags["labels"].shape[0])
    bad = [k for k in need if flags[k].shape != (n,)]
    if bad:
        return [f"flags arrays {', '.join(bad)} do not all have shape ({n},)"]
    out = []
    m = record.metrics
    if n != m.n:
        out.append(f"flags hold {n} samples but metrics.n is {m.n}")
    if n != record.protocol.n_samples:
        out.append(f"flags hold {n} samples but protocol.n_samples is {record.protocol.n_samples}")
    if not np.array_equal(flags["clean_correct"].astype(bool), flags["clean_pred"] == flags["labels"]):
        out.append("flags: clean_correct is not clean_pred == labels")
    worst = flags["clean_correct"].astype(bool)
    for a in attacks:
        worst = worst & flags[f"robust__{a}"].astype(bool)
    if not np.array_equal(worst, flags["robust"].astype(bool)):
        out.append("flags: robust is not clean_correct ∧ every robust__<attack>")
    if out:
        return out
    again = metrics_from_flags(flags, m.num_classes, attacks)
    for name in ("clean_accuracy", "robust_accuracy", "clean_normalised", "robust_normalised", "chance"):
        a, b = getattr(m, name), getattr(again, name)
        if abs(a - b) > METRIC_TOL:
            out.append(f"metrics.{name} is {a:.6g} but the flags give {b:.6g}")
    for a in sorted(set(m.per_attack) | set(again.per_attack)):
        x, y = m.per_attack.get(a), again.per_attack.get(a)
        if x is None or y is None or abs(x - y) > METRIC_TOL:
            out.append(f"metrics.per_attack.{a} is {x} but the flags give {y}")
    return out


def deviations(record: ResultRecord) -> list[str]:
    """How the record's settings differ from its protocol's (a table marks such numbers)."""
    p = record.protocol
    s = p.settings or {}
    out = []
    defaults = s.get("attack_defaults") or {}
    for att in p.attacks:
        for k, v in (defaults.get(att.name) or {}).items():
            if k in att.params and att.params[k] != v:
                out.append(f"{att.name}.{k} = {att.params[k]} (protocol: {v})")
    if "n_samples" in s:
        want = (s.get("subsets") or {}).get(p.subset, s["n_samples"]) if p.subset else s["n_samples"]
        expected = p.n_total if want is None else min(int(want), p.n_total)
        if p.n_samples != expected:
            out.append(f"n = {p.n_samples} of {p.n_total} (protocol: {'all' if want is None else want})")
    if "seed" in s and s["seed"] != p.seed:
        out.append(f"seed = {p.seed} (protocol: {s['seed']})")
    if "eps" in s:
        allowed = {float(s["eps"]), *[float(e) for e in s.get("eps_sweep") or []]}
        k = round(p.eps * 255.0, 6)
        if all(abs(k - e) > 1e-6 for e in allowed):
            out.append(f"ε = {p.eps_text} (protocol: {', '.join(f'{e:g}/255' for e in sorted(allowed))})")
    return out


def protocol_of(record: ResultRecord) -> EntryProtocol:
    s = record.protocol.settings or {}
    datasets = [str(d) for d in s.get("datasets") or [record.protocol.dataset]]
    return EntryProtocol(name=record.protocol.name, version=record.protocol.version, datasets=datasets,
                         train_dataset=s.get("train_dataset"), normalised_average=bool(s.get("normalised_average", False)),
                         subset=record.protocol.subset, variant=record.protocol.variant)


def entry_model(record: ResultRecord) -> EntryModel:
    """The model of a measured entry, as its newest record names it."""
    m = record.model
    return EntryModel(id=m.id, name=m.id, defense=m.defense, architecture=m.architecture,
                      checkpoint_sha256=m.checkpoint_sha256 or m.weights_sha256, tensors_sha256=m.tensors_sha256,
                      origin=m.origin, inference=m.inference)


def measurement(record: ResultRecord, record_ref: FileRef, sidecar_ref: FileRef) -> DatasetMeasurement:
    return DatasetMeasurement(
        record=record_ref, sidecar=sidecar_ref, measured_at=record.created_at, zsrbench_version=record.zsrbench_version,
        git_sha=record.git_sha, n_samples=record.protocol.n_samples, indices_digest=record.protocol.indices_digest,
        metrics=record.metrics, flags=record.flags, deviations=deviations(record))


def code_key(origin: dict[str, str] | None) -> str | None:
    """What must match between a model's results and its audit: a plugin's ``package version`` (None for zsrbench's
    own defenses, versioned with zsrbench and the protocol, and for results written before provenance was
    recorded)."""
    if not origin or origin.get("kind") != "plugin":
        return None
    return f"{origin.get('package')} {origin.get('version')}"


def describe_origin(origin: dict[str, str] | None) -> str:
    """``built-in``, ``plugin pkg 0.2.0``, ``code tests.x:Y`` or ``unknown`` (written before it was recorded)."""
    if not origin:
        return "unknown"
    kind = origin.get("kind")
    if kind == "plugin":
        return f"plugin {origin.get('package')} {origin.get('version')}"
    if kind == "code":
        return f"code {origin.get('module')}"
    return str(kind)


EntryKey = tuple[str, int, str, str, str, "str | None", "str | None"]


def entry_key(record: ResultRecord) -> EntryKey:
    """(protocol, version, model id, suite, ε text, subset, variant): the records of one leaderboard entry."""
    p = record.protocol
    return (p.name, p.version, record.model.id, p.suite, p.eps_text, p.subset, p.variant)
