"""Leaderboard tables as data: groups (protocol version × suite × ε × subset), rows (models), cells (numbers,
95% intervals, marks).

One group never mixes protocol versions, attack suites, ε or sample sets. The default view starts each
(protocol version, ε, subset) with a *ranking* group (``zsrbench.leaderboard.ranking``: the per-sample worst
case over every suite of each model, the ranking rules and significance groups), followed by one group per
suite: measured rows first (by average robust accuracy), then the reported (published) rows. Reported rows are
never numbered; each carries its source and the protocol the source actually used (attack, precision, datasets,
samples, baselines re-run or copied: ``zsrbench/reported_data/sources.json``) as its status, and per method the
authors' own (self-reported) row comes first with the third parties' rows below it, each showing its difference
to the authors' in points. Their numbers never enter a measured average and have no interval (there are no
per-sample flags).

Honest labels: a group of a proxy protocol (``Protocol.proxy``: micro, synthetic) says what it is
(``Group.proxy``); a dataset whose robust column says little about the models is noted (``Group.dataset_notes``,
:func:`dataset_notes`): *saturated* where the protocol's undefended model is already ≥ 90% robust, *at chance*
where every measured model's Wilson 95% interval reaches the dataset's chance level or lies below it.

Intervals (95%): Wilson per dataset (from the measured n and accuracy); a stratified bootstrap over samples
(:func:`zsrbench.stats.bootstrap_average_counts`) for the averages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from zsrbench.eps import normalise_eps
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.combine import suite_order
from zsrbench.leaderboard.labels import REPORTED_FOOTER, dataset_notes, order_reported
from zsrbench.leaderboard.reading import LoadedEntry
from zsrbench.leaderboard.rows import finish_footnotes, measured_row, new_group, new_notes, reported_row
from zsrbench.leaderboard.schema import LeaderboardEntry
from zsrbench.leaderboard.table_model import (
    AUDIT_NONE, METRICS, NON_ADAPTIVE, RANKING, Group, GroupKey, Row, StatusKey, TableSet, rank_value,
)

if TYPE_CHECKING:
    from zsrbench.leaderboard.combine import FlagsCache


def matches_attack(e: LeaderboardEntry, attack: str) -> bool:
    a = attack.strip().lower()
    return e.suite.lower() == a or (e.reported is not None and e.reported.attack.lower() == a)


def select(entries: Sequence[LoadedEntry], *, protocol: str | None = None, attack: str | None = None,
           eps: str | None = None, include_reported: bool = True) -> list[LoadedEntry]:
    want_eps = normalise_eps(eps)
    out = []
    for le in entries:
        e = le.entry
        if protocol and e.protocol.name != protocol:
            continue
        if attack and not matches_attack(e, attack):
            continue
        if want_eps and e.eps_text != want_eps:
            continue
        if not include_reported and e.kind == "reported":
            continue
        out.append(le)
    return out


def require_suites(entries: Sequence[LoadedEntry], suites: Sequence[str], *, protocol: str | None = None,
                   eps: str | None = None) -> None:
    """A :class:`ZsrError` naming the suites that exist when one of ``suites`` (``--worst-of``) has no measured
    entry among ``entries`` (already narrowed by ``--protocol`` / ``--eps``)."""
    have = sorted({le.entry.suite for le in entries if le.entry.kind == "measured"}, key=suite_order)
    missing = [s for s in suites if s not in have]
    if not missing:
        return
    scope = " with " + " and ".join(f for f in (protocol and f"--protocol {protocol}", eps and f"--eps {eps}") if f) \
        if protocol or eps else ""
    if not have:
        raise ZsrError(f"--worst-of combines measured entries, and this leaderboard has none{scope}: check "
                       "--leaderboard-dir, --protocol and --eps, or measure suites with `zsrbench run --attack`.")
    hint = (f"Choose two or more of them, e.g. --worst-of {','.join(have[:2])}" if len(have) > 1 else
            f"Measure another suite with `zsrbench run --attack` to combine it with {have[0]}")
    raise ZsrError(f"--worst-of names {', '.join(repr(s) for s in missing)}, which no measured entry of this "
                   f"leaderboard{scope} has; the suites measured are {', '.join(have)}. {hint}.")


def select_version(entries: Sequence[LoadedEntry], version: str = "latest") -> tuple[list[LoadedEntry], list[str]]:
    """Keep one protocol version: ``latest`` (per protocol), ``all``, or a number. Returns (kept, notes)."""
    if version == "all":
        return list(entries), []
    newest: dict[str, int] = {}
    for le in entries:
        p = le.entry.protocol
        newest[p.name] = max(newest.get(p.name, p.version), p.version)
    kept, hidden = [], {}
    for le in entries:
        p = le.entry.protocol
        want = newest[p.name] if version == "latest" else int(version)
        if p.version == want:
            kept.append(le)
        else:
            hidden.setdefault((p.name, p.version), 0)
            hidden[(p.name, p.version)] += 1
    notes = [f"{n} entr{'y' if n == 1 else 'ies'} of {name} v{v} not shown (--protocol-version {v} or all shows "
             f"{'it' if n == 1 else 'them'})" for (name, v), n in sorted(hidden.items())]
    return kept, notes


def parse_version(value: str) -> str:
    """``latest``, ``all`` or a positive protocol version number (as text); a clear error otherwise."""
    v = value.strip().lower().removeprefix("v")
    if v in ("latest", "all") or (v.isdigit() and int(v) > 0):
        return v
    raise ZsrError(f"--protocol-version takes latest, all or a version number (e.g. 2); got '{value}'.")


def visible(le: LoadedEntry) -> bool:
    """Entries that can be rows: not audits (they only give a row its status), not withdrawn reported numbers."""
    e = le.entry
    if e.kind == "audit":
        return False
    return not (e.kind == "reported" and e.reported is not None and e.reported.withdrawn)


def group_key(e: LeaderboardEntry, suite: str | None = None) -> GroupKey:
    p = e.protocol
    return (p.name, p.version, e.suite if suite is None else suite, e.eps_text, p.subset, p.variant)


def _status_key(k: GroupKey) -> StatusKey:
    return (k[0], k[1], k[3], k[4], k[5])


def _group(entries: Sequence[LoadedEntry], suite: str | None = None) -> dict[GroupKey, list[LoadedEntry]]:
    groups: dict[GroupKey, list[LoadedEntry]] = {}
    for le in entries:
        if visible(le) and (suite is None or le.entry.eps_text is not None):
            groups.setdefault(group_key(le.entry, suite), []).append(le)
    return groups


def build_tables(entries: Sequence[LoadedEntry], *, metrics: Sequence[str] = METRICS,
                 audits: Sequence[LoadedEntry] | None = None, ranking: bool = True,
                 cache: "FlagsCache | None" = None, evidence: Sequence[LoadedEntry] | None = None) -> TableSet:
    """Group, rank and annotate ``entries`` (already selected) into tables.

    ``audits``: the audit entries that give rows their audit status (default: those among ``entries``).
    ``ranking``: start each (protocol version, ε, subset) of the standard evaluation with its ranking group (the
    default view; off for ``--attack`` and ``--worst-of``). ``evidence``: the entries the ranking rules are applied
    to (default: ``entries``; every suite of the models, when ``entries`` was narrowed to one): only a model they
    rank gets a number, in any table.
    """
    from zsrbench.leaderboard import ranking as rk
    from zsrbench.leaderboard.combine import FlagsCache

    cache = cache or FlagsCache()
    audit_index = rk.audit_index(entries if audits is None else audits)
    ts = TableSet(metrics=tuple(metrics))
    groups = _group(entries)
    versions: dict[str, set[int]] = {}
    for name, version, *_ in groups:
        versions.setdefault(name, set()).add(version)
    for name, vs in sorted(versions.items()):
        if len(vs) > 1:
            ts.warnings.append(f"protocol {name} has entries under versions {', '.join(map(str, sorted(vs)))}: they are "
                               "shown in separate tables, never in one column")
    rank_members = _group(entries if evidence is None else evidence, RANKING)
    rank_groups = {k: rk.ranking_group(k, v, audit_index, ts.warnings, cache)
                   for k, v in rank_members.items() if any(m.entry.kind == "measured" for m in v)}
    for k, rg in rank_groups.items():
        rg.dataset_notes = dataset_notes(rg, rank_members[k])
    statuses = {_status_key(k): {r.model_id: r for r in g.rows if r.model_id} for k, g in rank_groups.items()}
    shown = {_status_key(k) for k in groups}
    if ranking:  # the standard evaluation's ranking tables (an experiment's rows are ranked nowhere)
        groups.update({k: [] for k in rank_groups if k[5] is None and _status_key(k) in shown})

    def order(k: GroupKey) -> tuple:
        name, version, suite, eps_text, subset, variant = k
        return (name, -version, variant is not None, variant or "", subset is not None, subset or "",
                float(eps_text.split("/")[0]) if eps_text else -1.0, suite != RANKING, suite_order(suite))

    for key in sorted(groups, key=order):
        if key[2] == RANKING:
            ts.groups.append(rank_groups[key])
        else:
            ts.groups.append(_build_group(key, groups[key], ts.warnings, statuses.get(_status_key(key), {})))
    ts.warnings = list(dict.fromkeys(ts.warnings))  # a ranking group repeats its suites' warnings
    _pair_non_adaptive(ts.groups)
    return ts


def _pair_non_adaptive(groups: Sequence[Group]) -> None:
    """Side by side: each model with both a standard (adaptive) row and a non-adaptive (as published) row of the
    same suite gets a footer line in both tables comparing their robust averages."""
    standard = {(g.protocol, g.version, g.suite, g.eps_text, g.subset): g for g in groups if g.variant is None}
    for g in groups:
        if g.variant != NON_ADAPTIVE or g.kind == RANKING:
            continue
        other = standard.get((g.protocol, g.version, g.suite, g.eps_text, g.subset))
        if other is None:
            continue
        adaptive = {r.model_id: r for r in other.rows if r.kind == "measured" and r.model_id}
        for r in g.rows:
            a = adaptive.get(r.model_id) if r.kind == "measured" else None
            va = a.cells["robust"].get("avg") if a is not None else None
            vn = r.cells["robust"].get("avg")
            if va is None or vn is None or va.value is None or vn.value is None:
                continue
            line = (f"{r.label}: robust {100 * vn.value:.2f} % non-adaptive (as published) vs {100 * va.value:.2f} % "
                    f"adaptive: the published kind of number overstates by {100 * (vn.value - va.value):+.2f} points")
            for grp in (g, other):
                if line not in grp.footer:
                    grp.footer.append(line)


def _build_group(key: GroupKey, members: list[LoadedEntry], warnings: list[str], statuses: dict[str, Row]) -> Group:
    """One suite's table. Measured rows come first, ordered by the suite's own average; only a model the ranking
    rules rank (``statuses``: each model's row in its ranking group) gets a number, the others keep their reason.
    The reported (published) rows follow, never numbered, in per-method blocks (:func:`order_reported`)."""
    g, zs = new_group(key, members, warnings)
    notes = new_notes()
    for le in members:
        e = le.entry
        if e.kind == "measured":
            row = measured_row(le, g, zs, notes)
            ranked = statuses.get(e.model.id)
            row.audit = ranked.audit if ranked is not None else AUDIT_NONE
            row.status = ranked.status if ranked is not None else "unranked: no ranking evidence (ε or suites)"
            row.rank = 0 if ranked is not None and ranked.ranked else None
            g.rows.append(row)
        else:
            g.rows.append(reported_row(le, g, zs, notes))
    measured = sorted([r for r in g.rows if r.kind == "measured"], key=lambda r: (-rank_value(r), r.label, r.source))
    g.rows = measured + order_reported(g, [r for r in g.rows if r.kind == "reported"])
    for i, r in enumerate([r for r in g.rows if r.rank is not None], 1):
        r.rank = i
    g.dataset_notes = dataset_notes(g, members)
    if any(r.kind == "reported" for r in g.rows) and REPORTED_FOOTER not in g.footer:
        g.footer.append(REPORTED_FOOTER)
    finish_footnotes(g, notes)
    return g


