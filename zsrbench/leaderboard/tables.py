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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from zsrbench import stats
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.combine import suite_order
from zsrbench.leaderboard.entries import rev_name
from zsrbench.leaderboard.reading import LoadedEntry
from zsrbench.leaderboard.labels import (
    REPORTED_FOOTER, dataset_notes, dataset_tag, order_reported, protocol_proxy, rank_value, reported_label,
)
from zsrbench.leaderboard.schema import DatasetMeasurement, EntryProtocol, LeaderboardEntry, ReportedNumbers

if TYPE_CHECKING:
    from zsrbench.leaderboard.combine import FlagsCache

DAGGER, DDAGGER, STAR, SECTION = "†", "‡", "*", "§"
MARK_TITLES = {
    DAGGER: "AutoAttack warnings or attack fallbacks",
    DDAGGER: "settings differ from the protocol's",
    STAR: "average over fewer datasets than the protocol's",
    SECTION: "printed average differs from the mean of the printed per-dataset values",
}
PRINTED_TOL = 0.01  # percentage points: 2-decimal rounding of the values and of the average
METRICS = ("robust", "clean")
RANKING = "ranking"  # Group.kind and Group.suite of a ranking group
INTERVAL_NOTE = (f"± is half the width of the {stats.CONFIDENCE:.0%} interval: Wilson per dataset, a stratified bootstrap "
                 f"over samples ({stats.N_BOOTSTRAP} resamples, percentile) for the averages; near 0% or 100% the "
                 "interval is not symmetric: its bounds are the CSV's *_lo and *_hi columns and the JSON's lo and "
                 "hi. Reported numbers have no per-sample flags and no interval.")
AUDIT_NONE = "none"


@dataclass
class Cell:
    value: float | None  # a fraction in [0, 1] (normalised averages can be below 0)
    marks: list[str] = field(default_factory=list)
    lo: float | None = None  # 95% interval (None: unknown, e.g. reported numbers)
    hi: float | None = None

    def number(self) -> str:
        return "" if self.value is None else f"{100 * self.value:.2f}"

    @property
    def has_interval(self) -> bool:
        return self.value is not None and self.lo is not None and self.hi is not None

    def half_width(self) -> float | None:
        return (self.hi - self.lo) / 2 if self.has_interval else None  # type: ignore[operator]

    def pm(self) -> str:
        """``±h`` with h = half the interval's width in percentage points ("" without an interval)."""
        h = self.half_width()
        return "" if h is None else f"±{100 * h:.1f}"

    def bound(self, which: str) -> str:
        v = self.lo if which == "lo" else self.hi
        return "" if v is None or self.value is None else f"{100 * v:.2f}"


@dataclass
class Row:
    label: str
    kind: str  # "measured" | "reported"
    source: str  # "measured r0002" | "reported [1]"
    entry: str
    revision: int | None
    cells: dict[str, dict[str, Cell]]  # metric -> column key -> cell
    rank: int | None = 0  # None: listed, not ranked (see ``status``)
    source_text: str | None = None  # reported: the citation
    notes: dict[str, list[str]] = field(default_factory=lambda: {m: [] for m in METRICS})  # per metric, plain text
    audit: str | None = None  # measured rows: pass | warn | fail | none (no audit entry); reported: None
    status: str | None = None  # ranking groups: "ranked" or why not ("unranked: …", "unreliable: …")
    group: str | None = None  # ranking groups: significance group letter of a ranked row
    suites: list[str] = field(default_factory=list)  # ranking groups: the suites the row is the worst case of
    entries: list[str] = field(default_factory=list)  # the entries (slug@rNNNN) the row's numbers come from
    vs_above: dict | None = None  # ranking groups: the paired test against the ranked row just above
    model_id: str | None = None  # measured rows: the model the numbers are of
    # reported rows: the protocol the source used and the row's relation to the method (see reported_label)
    reported_protocol: dict | None = None

    @property
    def ranked(self) -> bool:
        return self.rank is not None

    def add_note(self, metrics: Sequence[str], text: str) -> None:
        for m in metrics:
            if text not in self.notes[m]:
                self.notes[m].append(text)


@dataclass
class Footnote:
    mark: str
    title: str
    items: list[str] = field(default_factory=list)


@dataclass
class Group:
    protocol: str
    version: int
    suite: str  # the attack suite; "ranking" for a ranking group
    eps_text: str | None
    datasets: list[str]
    train_dataset: str | None
    normalised: bool
    avg_columns: list[tuple[str, str]]  # (key, label)
    rows: list[Row] = field(default_factory=list)
    footnotes: dict[str, list[Footnote]] = field(default_factory=dict)  # per metric
    sources: list[str] = field(default_factory=list)  # index + 1 = reference number
    kind: str = "suite"  # "suite" | "ranking"
    subset: str | None = None  # a named subset of the protocol's evaluation sets (None: the full sets)
    footer: list[str] = field(default_factory=list)  # explanatory lines; "  - " starts a sub-item
    variant: str | None = None  # an experiment's settings (None: the protocol's standard evaluation)
    # what the protocol is when it is not evidence about methods (micro: a generated proxy for development and CI)
    proxy: str | None = None
    # dataset -> why its column says little about the models (e.g. the undefended model is already ≥ 90% robust,
    # or every model is at chance under attack); shown next to the column
    dataset_notes: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        eps = f"ε = {self.eps_text}" if self.eps_text else "clean"
        subset = f" · {self.subset} subset" if self.subset else ""
        variant = f" · experiment: variant {self.variant}" if self.variant else ""
        suite = "ranking: worst case over all suites" if self.kind == RANKING else self.suite
        return f"{self.protocol} v{self.version}{subset}{variant} · {suite} · {eps}"

    @property
    def proxy_line(self) -> str | None:
        """The sentence shown under the title of a proxy protocol's table (None: a protocol of real data)."""
        return f"{self.protocol} is {self.proxy}." if self.proxy else None

    def dataset_label(self, dataset: str) -> str:
        """A dataset's column title, tagged when it has a note (``micro_background (saturated)``)."""
        note = self.dataset_notes.get(dataset)
        return f"{dataset} ({dataset_tag(note)})" if note else dataset

    def dataset_note_lines(self) -> list[str]:
        """One line per noted dataset: ``<dataset>: <note>``."""
        return [f"{d}: {n}" for d, n in self.dataset_notes.items()]

    @property
    def is_ranking(self) -> bool:
        return self.kind == RANKING

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(d, d) for d in self.datasets] + self.avg_columns


@dataclass
class TableSet:
    groups: list[Group] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    metrics: tuple[str, ...] = METRICS




def normalise_eps(text: str | None) -> str | None:
    """``"1"``, ``"1/255"``, ``"1.0"``, ``"0.0039"`` -> ``"1/255"`` (see :mod:`zsrbench.eps`)."""
    if text is None:
        return None
    import math

    from zsrbench.errors import ZsrError
    from zsrbench.eps import eps_text, parse_eps

    units = parse_eps(text)
    if units is None or not math.isfinite(units) or units < 0:
        raise ZsrError(f"--eps takes a finite, non-negative ε such as 1, 4/255 or 0.0157; got {text!r}.")
    return eps_text(units)


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


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _protocol_for(entries: Sequence[LeaderboardEntry], warnings: list[str]) -> EntryProtocol:
    measured = [e.protocol for e in entries if e.kind == "measured"] or [e.protocol for e in entries]
    first = measured[0]
    datasets = list(first.datasets)
    for p in measured[1:]:
        extra = [d for d in p.datasets if d not in datasets]
        if extra or p.train_dataset != first.train_dataset or p.normalised_average != first.normalised_average:
            warnings.append(f"entries of {first.name} v{first.version} disagree on the protocol's datasets or averages; "
                            "showing the union of datasets")
            datasets += extra
    return first.model_copy(update={"datasets": datasets})


def visible(le: LoadedEntry) -> bool:
    """Entries that can be rows: not audits (they only give a row its status), not withdrawn reported numbers."""
    e = le.entry
    if e.kind == "audit":
        return False
    return not (e.kind == "reported" and e.reported is not None and e.reported.withdrawn)


GroupKey = tuple[str, int, str, "str | None", "str | None", "str | None"]  # protocol, version, suite, ε, subset, variant
StatusKey = tuple[str, int, "str | None", "str | None", "str | None"]  # a GroupKey without its suite


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
    return ts


def new_group(key: GroupKey, members: Sequence[LoadedEntry], warnings: list[str]) -> tuple[Group, list[str]]:
    """An empty group for ``key`` with the protocol's columns; and the zero-shot datasets."""
    name, version, suite, eps_text, subset, variant = key
    proto = _protocol_for([m.entry for m in members], warnings)
    datasets = proto.datasets
    train = proto.train_dataset if proto.train_dataset in datasets else None
    zs = [d for d in datasets if d != train]
    zs_reported = any(
        m.entry.reported is not None and any(
            n is not None and n.average is not None and n.average_scope == "zero-shot"
            for n in (m.entry.reported.clean, m.entry.reported.robust))
        for m in members)
    norm = " (norm.)" if proto.normalised_average else ""
    avg_cols = [("avg", f"Avg{norm}")]
    if train or zs_reported:
        avg_cols.append(("avg_zs", f"Avg zero-shot{norm}"))
    g = Group(protocol=name, version=version, suite=suite, eps_text=eps_text, datasets=datasets, train_dataset=train,
              normalised=proto.normalised_average, avg_columns=avg_cols, subset=subset,
              kind=RANKING if suite == RANKING else "suite", variant=variant, proxy=protocol_proxy(name))
    return g, zs














def new_notes() -> dict[str, dict[str, list[str]]]:
    return {metric: {m: [] for m in MARK_TITLES} for metric in METRICS}


def merge_items(items: Sequence[str | tuple[str, str]]) -> list[str]:
    """Footnote items in first-seen order; a ``(model, text)`` note that several models share is one item
    naming them all (``text — 5 models: a, b, …``), so a fallback every model hit is listed once."""
    who: dict[str, list[str]] = {}
    order: list[str] = []
    for item in items:
        label, text = item if isinstance(item, tuple) else (None, item)
        if text not in who:
            who[text] = []
            order.append(text)
        if label is not None and label not in who[text]:
            who[text].append(label)
    out = []
    for text in order:
        labels = who[text]
        out.append(text if not labels else f"{labels[0]}, {text}" if len(labels) == 1
                   else f"{text} — {len(labels)} models: {', '.join(labels)}")
    return out


def finish_footnotes(g: Group, notes: dict[str, dict[str, list[str]]]) -> None:
    g.footnotes = {metric: [Footnote(m, MARK_TITLES[m], merge_items(items)) for m, items in by_mark.items() if items]
                   for metric, by_mark in notes.items()}
    if any(r.kind == "measured" for r in g.rows) and INTERVAL_NOTE not in g.footer:
        g.footer.append(INTERVAL_NOTE)


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
            g.rows.append(_reported_row(le, g, zs, notes))
    measured = sorted([r for r in g.rows if r.kind == "measured"], key=lambda r: (-rank_value(r), r.label, r.source))
    g.rows = measured + order_reported(g, [r for r in g.rows if r.kind == "reported"])
    for i, r in enumerate([r for r in g.rows if r.rank is not None], 1):
        r.rank = i
    g.dataset_notes = dataset_notes(g, members)
    if any(r.kind == "reported" for r in g.rows) and REPORTED_FOOTER not in g.footer:
        g.footer.append(REPORTED_FOOTER)
    finish_footnotes(g, notes)
    return g


















def _count(m: DatasetMeasurement, metric: str) -> tuple[int, int]:
    """(k, n) behind a measured accuracy (the accuracy is k / n of the flags)."""
    n = m.metrics.n
    return int(round(getattr(m.metrics, f"{metric}_accuracy") * n)), n


def dataset_interval(m: DatasetMeasurement, metric: str) -> tuple[float | None, float | None]:
    k, n = _count(m, metric)
    if n <= 0:
        return None, None
    iv = stats.wilson(k, n)
    return iv.lo, iv.hi


def average_interval(ms: Sequence[DatasetMeasurement], metric: str,
                     normalised: bool) -> tuple[float | None, float | None]:
    counts = [_count(m, metric) for m in ms]
    if not counts or any(n <= 0 for _, n in counts):
        return None, None
    iv = stats.bootstrap_average_counts([k for k, _ in counts], [n for _, n in counts],
                                        [m.metrics.chance for m in ms] if normalised else None)
    return iv.lo, iv.hi


def measured_row(le: LoadedEntry, g: Group, zs: list[str], notes: dict[str, dict[str, list[str]]]) -> Row:
    e = le.entry
    assert e.measured is not None
    label = e.model.name
    if e.suite.startswith("worst-of("):
        rev = "combined from flags"
    else:
        rev = f"measured {rev_name(e.revision)}" if le.file is not None else "measured"
    row = Row(label=label, kind="measured", source=rev, entry=e.entry, revision=e.revision if le.file else None,
              cells={m: {} for m in METRICS}, entries=[f"{e.entry}@{rev_name(e.revision)}"] if le.file else [],
              model_id=e.model.id)
    ds_map = e.measured.datasets
    for d in g.datasets:
        m = ds_map.get(d)
        if m is None:
            row.cells["robust"][d] = Cell(None)
            row.cells["clean"][d] = Cell(None)
            continue
        rmarks, cmarks = [], []
        warn = [*m.flags.fallbacks, *m.flags.autoattack_warnings]
        if warn:
            rmarks.append(DAGGER)
            notes["robust"][DAGGER].append((label, f"{d}: {'; '.join(warn)}"))
            row.add_note(["robust"], f"{DAGGER} {d}: {'; '.join(warn)}")
        if m.deviations:
            rmarks.append(DDAGGER)
            cmarks.append(DDAGGER)
            for metric in METRICS:
                notes[metric][DDAGGER].append((label, f"{d}: {'; '.join(m.deviations)}"))
            row.add_note(METRICS, f"{DDAGGER} {d}: {'; '.join(m.deviations)}")
        row.cells["robust"][d] = Cell(m.metrics.robust_accuracy, rmarks, *dataset_interval(m, "robust"))
        row.cells["clean"][d] = Cell(m.metrics.clean_accuracy, cmarks, *dataset_interval(m, "clean"))
    extra = [d for d in ds_map if d not in g.datasets]
    if extra:
        row.add_note(METRICS, f"not columns of the protocol: {', '.join(extra)}")
    for metric in METRICS:
        attr = f"{metric}_normalised" if g.normalised else f"{metric}_accuracy"
        for key, cols in (("avg", g.datasets), ("avg_zs", zs)):
            if key not in dict(g.avg_columns):
                continue
            vals = [getattr(ds_map[d].metrics, attr) for d in cols if d in ds_map]
            cell = Cell(_mean(vals), [], *average_interval([ds_map[d] for d in cols if d in ds_map], metric, g.normalised))
            if vals and len(vals) < len(cols):
                cell.marks.append(STAR)
                missing = [d for d in cols if d not in ds_map]
                text = f"{label}: {key.replace('avg_zs', 'zero-shot average').replace('avg', 'average')} over " \
                       f"{len(vals)} of {len(cols)} datasets (missing: {', '.join(missing)})"
                notes[metric][STAR].append(text)
                row.add_note([metric], f"{STAR} {text}")
            row.cells[metric][key] = cell
    return row






def _reported_row(le: LoadedEntry, g: Group, zs: list[str], notes: dict[str, dict[str, list[str]]]) -> Row:
    e = le.entry
    r = e.reported
    assert r is not None
    if r.source not in g.sources:
        g.sources.append(r.source)
    ref = g.sources.index(r.source) + 1
    label = e.model.name
    row = Row(label=label, kind="reported", source=f"reported [{ref}]", entry=e.entry, revision=e.revision,
              cells={m: {} for m in METRICS}, source_text=r.source, rank=None,
              reported_protocol=reported_label(r, g))
    for note in r.notes:
        row.add_note(METRICS, note)
    for metric in METRICS:
        nums: ReportedNumbers | None = getattr(r, metric)
        per = nums.per_dataset if nums else {}
        for d in g.datasets:
            v = per.get(d)
            row.cells[metric][d] = Cell(None if v is None else v / 100.0)
        avg = Cell(None)
        avg_zs = Cell(None)
        if nums is not None and g.normalised:
            row.add_note([metric], "reported numbers are not normalised; no average shown")
        elif nums is not None:
            if nums.average is not None and nums.average_scope == "all":
                avg = Cell(nums.average / 100.0)
                mean = nums.per_dataset_mean
                if mean is not None and len(per) == len(g.datasets) and abs(nums.average - mean) > PRINTED_TOL:
                    avg.marks.append(SECTION)
                    why = "; ".join(nums.notes)
                    text = (f"{label} ({metric}, {r.source_id}): printed {nums.average:.2f}, mean of the printed "
                            f"per-dataset values {mean:.2f}" + (f" — {why}" if why else ""))
                    notes[metric][SECTION].append(text)
                    row.add_note([metric], f"{SECTION} {text}")
            elif all(d in per for d in g.datasets) and per:
                avg = Cell(_mean([per[d] for d in g.datasets]) / 100.0)  # type: ignore[operator]
            if nums.average is not None and nums.average_scope == "zero-shot":
                avg_zs = Cell(nums.average / 100.0)
                row.add_note([metric], "zero-shot average as printed by the source")
            elif zs and all(d in per for d in zs):
                avg_zs = Cell(_mean([per[d] for d in zs]) / 100.0)  # type: ignore[operator]
        row.cells[metric]["avg"] = avg
        if "avg_zs" in dict(g.avg_columns):
            row.cells[metric]["avg_zs"] = avg_zs
    return row
