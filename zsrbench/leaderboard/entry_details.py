"""What ``zsrbench show`` tells about one revision of an entry, as plain text and data: the records behind a
measured entry, its settings as (label, text) rows (the file, protocol, model, attacks, environment, checkpoint,
source), one block of lines per dataset, and all of it as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from zsrbench.errors import ZsrError
from zsrbench.leaderboard.entries import rev_name
from zsrbench.leaderboard.records import read_record
from zsrbench.leaderboard.schema import DatasetMeasurement, LeaderboardEntry, MeasuredData, ReportedData, ResultRecord

Records = dict[str, Union[ResultRecord, ZsrError]]  # per dataset: its record, or why it cannot be read


def read_records(edir: Path | None, e: LeaderboardEntry) -> Records:
    """The records a measured entry references (per dataset; the error when one cannot be read); none for others."""
    recs: Records = {}
    if e.measured is not None:
        for ds, m in e.measured.datasets.items():
            try:
                recs[ds] = read_record(edir / m.record.path)  # type: ignore[operator]
            except ZsrError as exc:
                recs[ds] = exc
    return recs


def show_data(path: Path, e: LeaderboardEntry, recs: Records, hist: list[tuple[int, Path, Any]]) -> dict[str, Any]:
    """``zsrbench show --json``: the entry, its records and the list of its revisions."""
    return {"file": str(path), "entry": e.model_dump(mode="json"),
            "records": {ds: (r.model_dump(mode="json") if not isinstance(r, ZsrError) else {"error": str(r)})
                        for ds, r in recs.items()},
            "revisions": [{"revision": k, "file": str(p), "valid": not isinstance(x, ZsrError)} for k, p, x in hist]}


def _fmt_pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _checkpoint_text(r: Any) -> str:
    m = r.model
    parts = [f"checkpoint {m.checkpoint}" if m.checkpoint else None, f"pretrained {m.pretrained}" if m.pretrained else None,
             f"checkpoint sha256 {m.checkpoint_sha256}" if m.checkpoint_sha256 else None,
             f"weights sha256 {m.weights_sha256}" if m.weights_sha256 else None]
    return ", ".join(p for p in parts if p) or "none (randomly initialised or unnamed weights)"


def settings_rows(e: LeaderboardEntry, path: Path, n: int, revisions: int, recs: Records,
                  shipped_in: Path | None = None) -> list[tuple[str, str]]:
    """The (label, text) rows of an entry's revision ``n`` (of ``revisions``) read from ``path``; ``shipped_in``:
    the leaderboard folder holding no reported entries of the protocol, for a published entry shipped with
    zsrbench (built in memory)."""
    shipped = shipped_in is not None
    rows: list[tuple[str, str]] = [
        ("file", f"{path} (shipped with zsrbench, read in memory: {shipped_in} holds no reported entries of "
                 f"{e.protocol.name})" if shipped else str(path)),
        ("revision", f"{rev_name(n)} of {revisions}"), ("created", "–" if shipped else e.created_at),
        ("protocol", f"{e.protocol.name} v{e.protocol.version} ({len(e.protocol.datasets)} datasets"
                     f"{', train: ' + e.protocol.train_dataset if e.protocol.train_dataset else ''}"
                     f"{', normalised averages' if e.protocol.normalised_average else ''})"),
        ("attack suite", e.suite), ("ε", e.eps_text or "– (clean)"), ("model", e.model.id),
    ]
    for label, val in (("defense", e.model.defense), ("architecture", e.model.architecture),
                       ("checkpoint sha256", e.model.checkpoint_sha256), ("model description", e.model.description)):
        if val:
            rows.append((label, val))
    rows += [("written by", f"zsrbench {e.zsrbench_version}"), ("digest", e.digest or "– (not written to a file)")]
    if e.previous:
        rows.append(("previous", f"{e.previous.file} (sha256 {e.previous.sha256[:16]}…)"))
    if e.measured is not None:
        rows += _measured_rows(e.measured, recs)
    if e.reported is not None:
        rows += _reported_rows(e.reported)
    return rows


def _measured_rows(ms: MeasuredData, recs: Records) -> list[tuple[str, str]]:
    """The attacks and settings of a measured entry, and what its readable records say about the run (each value
    once; several joined by ``|``)."""
    rows = [("attacks", "; ".join(f"{a.name} [{a.family}] " + ", ".join(f"{k}={v}" for k, v in sorted(a.params.items()))
                                  for a in ms.attacks))]
    rows.append(("precision, seed", f"{ms.precision}, {ms.seed}"))
    good = [r for r in recs.values() if not isinstance(r, ZsrError)]
    for label, vals in (
        ("env", {f"python {r.env.python}, torch {r.env.torch}, open_clip {r.env.open_clip}, pyautoattack "
                 f"{r.env.pyautoattack}" for r in good}),
        ("device", {f"{r.env.device} · {r.env.platform}" for r in good}),
        ("checkpoint", {_checkpoint_text(r) for r in good}),
        ("text tower sha256", {str(r.model.text_tower_sha256) for r in good}),
        ("git sha", {str(r.git_sha) for r in good}),
        ("success criterion", {r.protocol.success_criterion for r in good}),
        ("input", {f"{r.protocol.input_mode}, {r.protocol.input_size}px, logit scale {r.protocol.logit_scale:g}" for r in good}),
    ):
        if vals:
            rows.append((label, " | ".join(sorted(vals))))
    return rows


def _reported_rows(r: ReportedData) -> list[tuple[str, str]]:
    """The source of a reported entry's published numbers."""
    rows = [("source", r.source), ("source id", r.source_id), ("method", r.method),
            ("attack (as printed)", f"{r.attack}" + (f" — {r.attack_description}" if r.attack_description else "")),
            ("imported from", r.imported_from or "–")]
    rows += [("note", note) for note in r.notes]
    return rows


def dataset_lines(ds: str, m: DatasetMeasurement, rec: ResultRecord | ZsrError | None) -> list[str]:
    """The lines of one dataset of a measured entry: its numbers, samples, templates, when and how it was measured,
    its record and flags, and what went differently (fallbacks, warnings, notes, deviations from the protocol)."""
    per = ", ".join(f"{a} {_fmt_pct(v)}" for a, v in m.metrics.per_attack.items())
    lines = [f"{ds}: n={m.n_samples} of {rec.protocol.n_total if not isinstance(rec, ZsrError) else '?'}, "
             f"clean {_fmt_pct(m.metrics.clean_accuracy)}, robust {_fmt_pct(m.metrics.robust_accuracy)}"
             + (f" ({per})" if per else "")]
    lines.append(f"    samples {m.indices_digest}")
    if rec is not None and not isinstance(rec, ZsrError):
        lines.append(f"    templates {rec.protocol.templates_digest} · split {rec.protocol.split}")
    lines.append(f"    measured {m.measured_at} · git {m.git_sha} · zsrbench {m.zsrbench_version}")
    lines.append(f"    record {m.record.path} (sha256 {m.record.sha256[:16]}…) · flags {m.sidecar.path}")
    for label, items in (("fallbacks", m.flags.fallbacks), ("AutoAttack warnings", m.flags.autoattack_warnings),
                         ("notes", m.flags.notes), ("differs from the protocol", m.deviations)):
        if items:
            lines.append(f"    {label}: {'; '.join(items)}")
    if isinstance(rec, ZsrError):
        lines.append(f"    record unreadable: {rec}")
    return lines
