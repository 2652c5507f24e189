"""Audit entries of the leaderboard: one per (model, protocol version, ε), revisions like every entry.

An audit (``zsrbench audit``) is stored as an entry of kind ``audit`` named ``<model>__audit__eps<k>__v<n>``; an
audit whose checks and settings equal the newest revision's adds nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import zsrbench
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.entries import now_utc
from zsrbench.leaderboard.reading import Previous
from zsrbench.leaderboard.schema import NA, AuditCheck, AuditData, LeaderboardEntry, worst
from zsrbench.leaderboard.store import _taken_numbers, _write_revision, newest_readable, writing_entry


def _audit_content(entry: LeaderboardEntry) -> Any:
    """What makes two audits the same: every check and setting, not when or how fast they ran."""
    assert entry.audit is not None
    data = entry.audit.model_dump(mode="json")
    data.pop("timing", None)
    data.pop("env", None)
    return data, entry.model.model_dump(mode="json"), entry.protocol.model_dump(mode="json")


def add_audit(leaderboard_root: str | Path, draft: LeaderboardEntry, *, now: str | None = None) -> tuple[Path, bool]:
    """Add an audit entry as a new revision; an audit equal to the newest one adds nothing.

    Returns (the revision file, whether it reproduced the newest revision).
    """
    if draft.kind != "audit" or draft.audit is None:
        raise ZsrError(f"add_audit takes audit entries; '{draft.entry}' is {draft.kind}.")
    edir = Path(leaderboard_root) / draft.protocol.name / draft.entry
    with writing_entry(edir):  # an OSError while writing is a ZsrError; nothing half-written is left
        prev = newest_readable(edir)
        pe = prev.entry
        if pe is not None and prev.note is None and pe.kind == "audit" and _audit_content(pe) == _audit_content(draft):
            assert prev.path is not None
            return prev.path, True
        n = max(_taken_numbers(edir), default=0) + 1
        entry = draft.model_copy(update={"revision": n, "created_at": now or draft.created_at or now_utc(),
                                         "previous": prev.ref(), "changes": audit_changes(prev, draft),
                                         "zsrbench_version": zsrbench.__version__, "digest": ""})
        entry = LeaderboardEntry.model_validate(entry.model_dump())
        return _write_revision(edir, entry, {}), False


def audit_changes(prev: Previous, new: LeaderboardEntry) -> list[str]:
    """What this audit revision changes: datasets audited afresh (with their verdict), datasets carried over from
    an earlier revision, and per check the verdicts and summaries that changed."""
    lines = [prev.note] if prev.note else []
    a, b = (prev.entry.audit if prev.entry is not None else None), new.audit
    assert b is not None
    verdicts = dataset_verdicts(b)
    fresh = [ds for ds, info in b.datasets.items() if not info.get("carried_from")]
    carried: dict[str, list[str]] = {}
    for ds, info in b.datasets.items():
        if info.get("carried_from"):
            carried.setdefault(str(info["carried_from"]), []).append(ds)
    if a is None:
        lines.append(f"first audit: {b.verdict}" + (f" (failed: {', '.join(b.failed)})" if b.failed else ""))
    elif a.verdict != b.verdict:
        lines.append(f"verdict: {a.verdict} -> {b.verdict}")
    if a is not None or carried:
        old = dataset_verdicts(a) if a is not None else {}
        lines.append("audited: " + ", ".join(
            f"{ds} ({old[ds]} -> {verdicts.get(ds, 'n/a')})" if ds in old and old[ds] != verdicts.get(ds)
            else f"{ds} ({verdicts.get(ds, 'n/a')})" for ds in fresh))
    for rev, names in carried.items():
        lines.append(f"carried over from {rev} (not audited by this revision): {', '.join(names)}")
    if a is not None:
        lost = [ds for ds in a.datasets if ds not in b.datasets]
        if lost:
            lines.append(f"not carried over (other defense code or audit rules): {', '.join(lost)}")
        old_checks = {c.name: c for c in a.checks}
        for c in b.checks:
            o = old_checks.get(c.name)
            if o is None:
                lines.append(f"{c.name}: added ({c.verdict})")
            elif o.verdict != c.verdict or o.summary != c.summary:
                lines.append(f"{c.name}: {o.verdict} -> {c.verdict} ({c.summary})")
        if a.settings != b.settings:
            changed = sorted(k for k in {*a.settings, *b.settings} if a.settings.get(k) != b.settings.get(k))
            lines.append(f"settings changed: {', '.join(changed)}")
    return lines or ["re-audited: same checks, same numbers"]


def dataset_verdicts(audit: AuditData) -> dict[str, str]:
    """Each audited dataset's verdict: stored since audits keep them, else derived from the checks' rows (a row
    without a verdict, in audits written before every check had per-dataset rules, counts as n/a)."""
    if audit.dataset_verdicts:
        return dict(audit.dataset_verdicts)
    out = check_verdicts(audit.checks)
    return {ds: out.get(ds, "n/a") for ds in [*audit.datasets, *out]}


def check_verdicts(checks: Sequence[AuditCheck]) -> dict[str, str]:
    """Each dataset's verdict: the worst of the checks' verdicts on it (``n/a`` where no check had data)."""
    out: dict[str, list[str]] = {}
    for c in checks:
        for ds, row in c.per_dataset.items():
            out.setdefault(ds, []).append(str(row.get("verdict", NA)))
    return {ds: worst(vs) for ds, vs in out.items()}


def failures_on(checks: Sequence[AuditCheck], datasets: Sequence[str]) -> tuple[list[str], list[str]]:
    """(failed, warned) check names counting only the rows of ``datasets``."""
    failed, warned = [], []
    for c in checks:
        vs = [str(r.get("verdict", NA)) for ds, r in c.per_dataset.items() if ds in datasets]
        w = worst(vs)
        (failed if w == "fail" else warned if w == "warn" else []).append(c.name)
    return failed, warned
