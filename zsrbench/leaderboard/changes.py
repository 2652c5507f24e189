"""The ``changes`` lines of a new revision: what it changes against the revision before it.

:func:`measured_changes` and :func:`reported_changes` compare a measured or reported draft with the entry's
newest valid revision (:class:`~zsrbench.leaderboard.reading.Previous`) in lines a reviewer reads in
``zsrbench history``: attack settings, precision, seed, checkpoint, per-dataset numbers and sample sets, the
datasets carried over or dropped, the reported figures. :mod:`.store` writes them into the revision.
"""

from __future__ import annotations

from typing import Sequence

from zsrbench.leaderboard.entries import METRIC_TOL, describe_origin, rev_name
from zsrbench.leaderboard.reading import Previous
from zsrbench.leaderboard.schema import AttackConfig, DatasetMeasurement, LeaderboardEntry, ResultRecord


# ---------------------------------------------------------------------------------------------------- measured
def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _attacks_text(attacks: Sequence[AttackConfig]) -> str:
    return ", ".join(f"{a.name}({', '.join(f'{k}={v}' for k, v in sorted(a.params.items()))})" for a in attacks)


def measured_changes(prev: Previous, new: dict[str, DatasetMeasurement], carried: list[str], dropped: list[str],
                     attacks: list[AttackConfig], precision: str, seed: int, newest: ResultRecord,
                     why_dropped: str | None = None) -> list[str]:
    """What this revision changes, in lines a reviewer reads in ``zsrbench history``."""
    lines: list[str] = []
    if prev.note:
        lines.append(prev.note)
    pe = prev.entry
    if pe is None or pe.measured is None:
        lines.append(f"first measurement: {', '.join(new)} ({len(new)} dataset(s))")
        return lines
    pm = pe.measured
    if [a.model_dump() for a in pm.attacks] != [a.model_dump() for a in attacks]:
        lines.append(f"attack settings: {_attacks_text(pm.attacks)} -> {_attacks_text(attacks)}")
    if pm.precision != precision:
        lines.append(f"precision: {pm.precision} -> {precision}")
    if pm.seed != seed:
        lines.append(f"seed: {pm.seed} -> {seed}")
    if (pe.model.origin or None) != (newest.model.origin or None) and pe.model.origin is not None:
        lines.append(f"defense code: {describe_origin(pe.model.origin)} -> {describe_origin(newest.model.origin)}")
    if pe.model.checkpoint_sha256 != (newest.model.checkpoint_sha256 or newest.model.weights_sha256):
        lines.append(f"checkpoint sha256: {pe.model.checkpoint_sha256} -> "
                     f"{newest.model.checkpoint_sha256 or newest.model.weights_sha256}")
    old_git = {m.git_sha for ds, m in pm.datasets.items() if ds in new}
    new_git = {m.git_sha for m in new.values()}
    if old_git and old_git != new_git:
        lines.append(f"git_sha: {', '.join(sorted(str(g)[:12] for g in old_git))} -> "
                     f"{', '.join(sorted(str(g)[:12] for g in new_git))}")
    old_ver = {m.zsrbench_version for ds, m in pm.datasets.items() if ds in new}
    new_ver = {m.zsrbench_version for m in new.values()}
    if old_ver and old_ver != new_ver:
        lines.append(f"zsrbench version: {', '.join(sorted(old_ver))} -> {', '.join(sorted(new_ver))}")
    for ds, m in new.items():
        old = pm.datasets.get(ds)
        if old is None:
            lines.append(f"{ds}: added (clean {_pct(m.metrics.clean_accuracy)}, robust {_pct(m.metrics.robust_accuracy)})")
            continue
        if old.record.sha256 == m.record.sha256:
            lines.append(f"{ds}: same record as before")
            continue
        parts = []
        if old.indices_digest != m.indices_digest:
            parts.append(f"sample set changed (n {old.n_samples} -> {m.n_samples})")
        for name in ("clean_accuracy", "robust_accuracy"):
            a, b = getattr(old.metrics, name), getattr(m.metrics, name)
            if abs(a - b) > METRIC_TOL:
                parts.append(f"{name.split('_')[0]} {_pct(a)} -> {_pct(b)} ({100 * (b - a):+.2f})")
        for att in sorted(set(old.metrics.per_attack) | set(m.metrics.per_attack)):
            a, b = old.metrics.per_attack.get(att), m.metrics.per_attack.get(att)
            if a is None or b is None or abs(a - b) > METRIC_TOL:
                parts.append(f"{att} {'-' if a is None else _pct(a)} -> {'-' if b is None else _pct(b)}")
        if old.flags != m.flags:
            parts.append("warnings/fallbacks changed")
        lines.append(f"{ds}: " + ("; ".join(parts) if parts else "re-measured, numbers unchanged"))
    if carried:
        lines.append(f"carried over unchanged from {rev_name(pe.revision)}: {', '.join(carried)}")
    if dropped:
        lines.append(f"dropped on request (--replace-entry) from {rev_name(pe.revision)}, measured with "
                     f"{why_dropped or 'other settings'}: {', '.join(dropped)}")
    return lines


# ---------------------------------------------------------------------------------------------------- reported
def reported_changes(prev: Previous, new: LeaderboardEntry) -> list[str]:
    lines = [prev.note] if prev.note else []
    pe = prev.entry
    assert new.reported is not None
    if pe is None or pe.reported is None:
        src = new.reported.imported_from or new.reported.source
        return lines + [f"first revision: reported numbers imported from {src}"]
    a, b = pe.reported, new.reported
    for f in ("source", "source_id", "method", "attack", "attack_description"):
        if getattr(a, f) != getattr(b, f):
            lines.append(f"{f}: {getattr(a, f)!r} -> {getattr(b, f)!r}")
    for metric in ("clean", "robust"):
        x, y = getattr(a, metric), getattr(b, metric)
        if x == y:
            continue
        if x is None or y is None:
            lines.append(f"{metric}: {'added' if x is None else 'removed'}")
            continue
        for ds in list(dict.fromkeys([*x.per_dataset, *y.per_dataset])):
            u, v = x.per_dataset.get(ds), y.per_dataset.get(ds)
            if u != v:
                lines.append(f"{metric} {ds}: {u} -> {v}")
        if x.average != y.average:
            lines.append(f"{metric} average: {x.average} -> {y.average}")
        if x.notes != y.notes or x.average_scope != y.average_scope:
            lines.append(f"{metric}: notes or average scope changed")
    if a.notes != b.notes:
        lines.append("notes changed")
    for f in ("model", "protocol", "suite", "eps_text"):
        if getattr(pe, f) != getattr(new, f):
            lines.append(f"{f} changed")
    return lines or ["re-imported, content unchanged"]
