"""Checks of one result record file for ``zsrbench validate``: it parses, migrates and validates against its
schema, its protocol fields agree, and its flags sidecar exists, matches its sha256 and re-derives the stored
accuracies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zsrbench import jsonio
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.entries import check_flags, sha256_hex
from zsrbench.leaderboard.records import flags_from_bytes, parse_record
from zsrbench.leaderboard.schema import ResultRecord


def check_record(path: Path, expected_sha256: str | None = None) -> tuple[ResultRecord | None, list[str]]:
    """The record at ``path`` and the reasons it is bad (empty: good)."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        return None, [f"missing or unreadable ({exc.strerror or exc})"]
    if expected_sha256 is not None and sha256_hex(blob) != expected_sha256:
        return None, ["sha256 differs from the one its leaderboard entry names (the record was changed)"]
    try:
        record = parse_record(jsonio.parse(blob, path, "result record"), path)
    except ZsrError as exc:
        return None, [str(exc).removeprefix(f"{path}: ")]
    except (KeyError, TypeError, AttributeError) as exc:  # a JSON file too far from any record version to migrate
        return None, [f"not a result record (the field {exc} is missing or malformed); if it is not one, move it "
                      "out of this folder"]
    reasons = []
    p = record.protocol
    if f"{round(p.eps * 255, 6):g}/255" != p.eps_text:
        reasons.append(f"protocol.eps {p.eps} does not match eps_text {p.eps_text}")
    if p.suite != "+".join(a.name for a in p.attacks):
        reasons.append(f"protocol.suite '{p.suite}' is not the attacks {'+'.join(a.name for a in p.attacks)}")
    if record.sidecar is None:
        return record, reasons + ["names no flags sidecar, so its numbers cannot be re-derived"]
    side = path.parent / record.sidecar.file
    try:
        sblob = side.read_bytes()
    except OSError as exc:
        return record, reasons + [f"flags sidecar {record.sidecar.file} is missing ({exc.strerror or exc})"]
    if sha256_hex(sblob) != record.sidecar.sha256:
        return record, reasons + [f"flags sidecar {record.sidecar.file} does not match the sha256 the record names"]
    try:
        flags = flags_from_bytes(sblob, side)
    except ZsrError as exc:
        return record, reasons + [str(exc)]
    reasons += check_flags(record, flags)
    return record, reasons


def raw_json(path: Path) -> Any:
    """The JSON at ``path``, or None when it cannot be read or parsed (it is reported on its own)."""
    try:
        return jsonio.read(path)
    except ZsrError:
        return None

