"""Reading and writing result records and their per-sample flags sidecars (atomic, never overwriting)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from zsrbench.errors import ZsrError
from zsrbench.leaderboard.schema import ResultRecord, Sidecar


def slug(text: str) -> str:
    """A filesystem-safe name: ``clip/ViT-B-32-quickgelu/openai`` -> ``clip__ViT-B-32-quickgelu__openai``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text.replace("/", "__")).strip("_")


def eps_dir(eps_text: str) -> str:
    return "eps" + eps_text.replace("/255", "").replace(".", "p")


def record_path(results_dir: Path, record: ResultRecord) -> Path:
    p = record.protocol
    return Path(results_dir) / p.name / slug(record.model.id) / slug(p.suite) / eps_dir(p.eps_text) / f"{p.dataset}.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def flags_to_bytes(flags: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **flags)
    return buf.getvalue()


def record_json(record: ResultRecord) -> str:
    return json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def write_result(results_dir: str | Path, record: ResultRecord, flags: dict[str, np.ndarray]) -> Path:
    """Write ``record`` and its flags sidecar under ``results_dir``; returns the record's path.

    The sidecar is written first; the record names it with its sha256, so a record always points at complete
    flags. An existing record for the same key is replaced only by a complete new one (atomic rename).
    """
    path = record_path(Path(results_dir), record)
    blob = flags_to_bytes(flags)
    side = path.with_suffix(".flags.npz")
    try:
        atomic_write_bytes(side, blob)
        record = record.model_copy(update={"sidecar": Sidecar(file=side.name, sha256=hashlib.sha256(blob).hexdigest())})
        atomic_write_bytes(path, record_json(record).encode())
    except OSError as exc:
        raise ZsrError(
            f"Cannot write results under {results_dir} ({exc.strerror or exc}). Choose a writable directory "
            "with --results-dir."
        ) from exc
    return path


def read_record(path: str | Path) -> ResultRecord:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ZsrError(f"{path}: not a readable JSON result record ({exc}).") from exc
    try:
        return ResultRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ZsrError(f"{path}: invalid result record: {where}: {first['msg']} ({exc.error_count()} error(s)).") from exc


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
    with np.load(io.BytesIO(blob)) as z:
        return {k: z[k] for k in z.files}


def iter_records(root: str | Path) -> list[tuple[Path, ResultRecord | ZsrError]]:
    """Every ``*.json`` record under ``root``, parsed; bad files come back as their error (nothing is lost)."""
    out: list[tuple[Path, Any]] = []
    for path in sorted(Path(root).rglob("*.json")):
        try:
            out.append((path, read_record(path)))
        except ZsrError as exc:
            out.append((path, exc))
    return out
