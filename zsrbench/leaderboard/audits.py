"""Audit entries of the leaderboard: one per (model, protocol version, ε), revisions like every entry.

An audit (``zsrbench audit``) is stored as an entry of kind ``audit`` named ``<model>__audit__eps<k>__v<n>``; an
audit whose checks and settings equal the newest revision's adds nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zsrbench
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.entries import now_utc
from zsrbench.leaderboard.reading import Previous, _previous
from zsrbench.leaderboard.schema import LeaderboardEntry
from zsrbench.leaderboard.store import _taken_numbers, _write_revision, writing_entry


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
        prev = _previous(edir)
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
    lines = [prev.note] if prev.note else []
    assert new.audit is not None
    a = prev.entry.audit if prev.entry is not None else None
    if a is None:
        return lines + [f"first audit: {new.audit.verdict}"
                        + (f" (failed: {', '.join(new.audit.failed)})" if new.audit.failed else "")]
    if a.verdict != new.audit.verdict:
        lines.append(f"verdict: {a.verdict} -> {new.audit.verdict}")
    old = {c.name: c for c in a.checks}
    for c in new.audit.checks:
        o = old.get(c.name)
        if o is None:
            lines.append(f"{c.name}: added ({c.verdict})")
        elif o.verdict != c.verdict or o.summary != c.summary:
            lines.append(f"{c.name}: {o.verdict} -> {c.verdict} ({c.summary})")
    if a.settings != new.audit.settings:
        lines.append("settings changed")
    return lines or ["re-audited: same checks, same numbers"]
