"""Reading and writing result records and their per-sample flags sidecars (atomic, never overwriting)."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import ValidationError

from zsrbench.errors import ZsrError
from zsrbench.leaderboard.atomic import replace_files, user_error
from zsrbench.leaderboard.migrate import migrate
from zsrbench.leaderboard.schema import Metrics, ResultRecord, Sidecar, read_json


def metrics_from_flags(flags: dict[str, np.ndarray], num_classes: int, attacks: Sequence[str]) -> Metrics:
    """Clean, worst-case and per-attack robust accuracy, re-derived from a per-sample flags sidecar alone.

    ``n_nonfinite`` counts the samples flagged in ``flags["nonfinite"]`` (NaN/inf logits, clean or under an attack;
    0 for sidecars written before the array existed).
    """
    n = int(flags["labels"].shape[0])
    chance = 1.0 / num_classes

    def acc(mask: np.ndarray) -> float:
        return float(np.asarray(mask).sum()) / n if n else 0.0

    def norm(a: float) -> float:
        return (a - chance) / (1 - chance) if num_classes > 1 else 0.0

    clean, rob = acc(flags["clean_correct"]), acc(flags["robust"])
    nonfinite = flags.get("nonfinite")
    return Metrics(n=n, num_classes=num_classes, chance=chance, clean_accuracy=clean, robust_accuracy=rob,
                   per_attack={a: acc(flags[f"robust__{a}"]) for a in attacks},
                   clean_normalised=norm(clean), robust_normalised=norm(rob),
                   n_nonfinite=int(np.asarray(nonfinite, dtype=bool).sum()) if nonfinite is not None else 0)


def slug(text: str) -> str:
    """A filesystem-safe name: ``clip/ViT-B-32-quickgelu/openai`` -> ``clip__ViT-B-32-quickgelu__openai``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text.replace("/", "__")).strip("_")


def eps_dir(eps_text: str) -> str:
    return "eps" + eps_text.replace("/255", "").replace(".", "p")


def result_path(results_dir: str | Path, protocol: str, version: int, model_id: str, suite: str, eps_text: str,
                dataset: str, subset: str | None = None, variant: str | None = None) -> Path:
    """Where the record of one (protocol version, model, suite, ε, subset, variant, dataset) lives under
    ``results_dir``; ``variant`` names the run's settings that differ from the protocol's (seed, batch, ...)."""
    eps_part = eps_dir(eps_text) + "".join(f"__{slug(x)}" for x in (subset, variant) if x)
    return Path(results_dir) / protocol / f"v{version}" / slug(model_id) / slug(suite) / eps_part / f"{dataset}.json"


def record_path(results_dir: Path, record: ResultRecord) -> Path:
    p = record.protocol
    return result_path(results_dir, p.name, p.version, record.model.id, p.suite, p.eps_text, p.dataset, p.subset,
                       p.variant)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (see :func:`zsrbench.leaderboard.atomic.replace_files`);
    an ``OSError`` is re-raised after cleaning up."""
    replace_files([(path, data)])


def flags_to_bytes(flags: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **flags)
    return buf.getvalue()


def record_json(record: ResultRecord) -> str:
    return json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def write_result(results_dir: str | Path, record: ResultRecord, flags: dict[str, np.ndarray]) -> Path:
    """Write ``record`` and its flags sidecar under ``results_dir``; returns the record's path.

    Both are written whole under temporary names, then renamed into place, the sidecar first; the record names it
    with its sha256, so a record always points at complete flags. An existing record for the same key (and its
    sidecar) is replaced only by a complete new pair; after an ``OSError`` (a full disk…) the old pair is put back
    and a :class:`ZsrError` names the cause.
    """
    path = record_path(Path(results_dir), record)
    blob = flags_to_bytes(flags)
    side = path.with_suffix(".flags.npz")
    record = record.model_copy(update={"sidecar": Sidecar(file=side.name, sha256=hashlib.sha256(blob).hexdigest())})
    try:
        replace_files([(side, blob), (path, record_json(record).encode())])
    except OSError as exc:
        raise user_error(path, exc, option="--results-dir", kept="Nothing of this record was written: results "
                         "already there are unchanged") from exc
    return path


def read_record(path: str | Path) -> ResultRecord:
    path = Path(path)
    return parse_record(read_json(path, "result record"), path)


def validation_message(exc: ValidationError) -> str:
    """The first schema error of ``exc`` in one line: ``field.path: message (N error(s))``."""
    first = exc.errors()[0]
    where = ".".join(str(x) for x in first["loc"]) or "(top level)"
    return f"{where}: {first['msg']} ({exc.error_count()} error(s))"


def parse_record(data: Any, path: str | Path = "<record>") -> ResultRecord:
    """A parsed JSON result record, migrated from older schema versions and validated."""
    try:
        data = migrate(data, "record")
    except ZsrError as exc:
        raise ZsrError(f"{path}: {exc}") from exc
    try:
        return ResultRecord.model_validate(data)
    except ValidationError as exc:
        raise ZsrError(f"{path}: invalid result record: {validation_message(exc)}.") from exc


def read_flags(record_file: str | Path, record: ResultRecord | None = None) -> dict[str, np.ndarray]:
    record_file = Path(record_file)
    record = record or read_record(record_file)
    if record.sidecar is None:
        raise ZsrError(f"{record_file}: the record names no flags sidecar.")
    side = record_file.with_name(record.sidecar.file)
    try:
        blob = side.read_bytes()
    except OSError as exc:
        raise ZsrError(f"{record_file}: its flags sidecar {side} is missing ({exc.strerror}).") from exc
    if hashlib.sha256(blob).hexdigest() != record.sidecar.sha256:
        raise ZsrError(f"{side}: sha256 does not match the one its record {record_file.name} names.")
    return flags_from_bytes(blob, side)


def flags_from_bytes(blob: bytes, where: str | Path = "<flags>") -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # a damaged zip/npy raises many kinds of error
        raise ZsrError(f"{where}: not a readable flags file ({type(exc).__name__}: {exc}).") from exc


def iter_records(root: str | Path) -> list[tuple[Path, ResultRecord | ZsrError]]:
    """Every ``*.json`` record under ``root``, parsed; bad files come back as their error (nothing is lost)."""
    out: list[tuple[Path, Any]] = []
    for path in sorted(Path(root).rglob("*.json")):
        if path.name.endswith(".schema.json"):
            continue
        try:
            out.append((path, read_record(path)))
        except ZsrError as exc:
            out.append((path, exc))
    return out
