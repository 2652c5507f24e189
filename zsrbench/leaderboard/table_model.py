"""The table model: groups (one table: protocol version × suite × ε × subset × variant), rows (models or published
numbers) and cells (numbers with their 95% interval and marks), as :mod:`.tables` builds them and every renderer
(:mod:`.render`, :mod:`.frame`, the website, the plots) reads them. Data only: nothing here reads the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from zsrbench import stats

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
SATURATED, AT_CHANCE = "saturated", "at chance"  # the tags of Group.dataset_notes (the notes start with them)


NON_ADAPTIVE = "non-adaptive"  # the variant of a test-time defense attacked as its paper did (evaluation.adaptive)


def is_non_adaptive(variant: str | None) -> bool:
    """Whether ``variant`` is a non-adaptive run's (alone, or before other changed settings after ``__``)."""
    return bool(variant) and str(variant).split("__")[0] == NON_ADAPTIVE


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
        if is_non_adaptive(self.variant):
            variant = " · non-adaptive (as published): bare model attacked, never ranked" + (
                f" · variant {self.variant}" if self.variant != NON_ADAPTIVE else "")
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


GroupKey = tuple[str, int, str, "str | None", "str | None", "str | None"]  # protocol, version, suite, ε, subset, variant


StatusKey = tuple[str, int, "str | None", "str | None", "str | None"]  # a GroupKey without its suite


def dataset_tag(note: str) -> str:
    """The short tag of a dataset note (``saturated``, ``at chance``) for its column title."""
    return next((t for t in (SATURATED, AT_CHANCE) if note.startswith(t)), "see note")


def rank_value(row: Row) -> float:
    """The number rows are ordered by: the robust average (or zero-shot average) of the row."""
    cells = row.cells.get("robust", {})
    for k in ("avg", "avg_zs"):
        c = cells.get(k)
        if c is not None and c.value is not None:
            return c.value
    return float("-inf")
