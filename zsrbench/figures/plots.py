"""`zsrbench plot`: figures of recorded results, from a leaderboard or a raw results folder.

* :func:`eps_figure` — robust accuracy against ε, one line per model (entries of an ε sweep), the clean accuracy
  at ε = 0;
* :func:`tradeoff_figure` — clean against robust accuracy, one point per model at one ε;
* :func:`bars_figure` / :func:`entry_bars` — per-dataset clean and robust accuracy of one or more entries.

Every number is one a table shows (``zsrbench table``): per-dataset accuracies with their Wilson intervals and
averages (normalised where the protocol says so) with their stratified bootstrap intervals, both through
:mod:`zsrbench.leaderboard.tables` (:mod:`zsrbench.stats`). Error bars are 95% intervals. Only measured entries are
plotted (reported numbers have no intervals).

No figure shows a rank. A model the ranking rules do not rank (:func:`standings`: its status in the tables, e.g.
failed audit, not audited, a missing suite, a subset, an experiment) is marked with the first words of the reason
next to its name, in the legend or the panel's title (``TeCoA (unreliable: gradient masking)``); a proxy
protocol's figures say what it is in their caption.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from zsrbench.errors import ZsrError
from zsrbench.figures.output import new_figure, render, resolve_outputs, write_files
from zsrbench.leaderboard.labels import protocol_proxy
from zsrbench.leaderboard.reading import LoadedEntry
from zsrbench.leaderboard.schema import LeaderboardEntry

AVERAGES = ("zero-shot", "all")
CLEAN_COLOR, ROBUST_COLOR = "#9ecae1", "#08519c"
RANKED = "ranked"  # the status of a ranked row (zsrbench.leaderboard.ranking.RANKED)
CAPTION_WIDTH = 110  # characters per line of a caption
CAPTION_BOTTOM, CAPTION_LINE = 0.2, 0.04  # the room under a plot for its caption, and for each further line


# --- which entries -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which measured entries a plot uses (None: the default described at each field)."""

    protocol: str = "micro"
    version: str = "latest"  # latest | a number
    subset: str | None = None  # a named subset, "full" (the full sets); None: full if measured, else the only one
    attack: str | None = None  # the suite; None: the only one, else the protocol's first required suite
    models: tuple[str, ...] = ()  # parts of model ids or defense names; empty: every model


@dataclass
class Chosen:
    entries: list[LoadedEntry]
    suite: str
    subset: str | None
    version: int
    warnings: list[str] = field(default_factory=list)
    # entry slug -> its status in the tables ("ranked", or why not); empty: not known (no marks drawn)
    standing: dict[str, str] = field(default_factory=dict)
    proxy: str | None = None  # what the protocol is when it is not evidence about methods


@dataclass
class Board:
    """What a plot reads: the measured entries, the audit entries their ranking rests on, and warnings."""

    entries: list[LoadedEntry]
    audits: list[LoadedEntry]
    warnings: list[str]


def load_board(*, results_dir: str | Path | None = None, leaderboard_dir: str | Path | None = None,
               protocol: str | None = None) -> Board:
    """The measured and audit entries of a leaderboard (newest revisions; None: the default folder,
    :func:`zsrbench.paths.leaderboard_dir`) or of a raw results folder (no audits), and warnings about files that
    could not be read (skipped, nothing changed)."""
    from zsrbench.leaderboard.board import load_leaderboard
    from zsrbench.leaderboard.reading import entries_from_results

    if results_dir is not None and leaderboard_dir is not None:
        raise ZsrError("Pass either --results-dir or --leaderboard-dir, not both.")
    view = (entries_from_results(results_dir, protocol) if results_dir is not None
            else load_leaderboard(leaderboard_dir, protocol, reported=False))
    warnings = [f"{p}: {why} — not plotted; run `zsrbench validate` (nothing was changed)" for p, why in view.problems]
    measured = [le for le in view.entries if le.entry.kind == "measured" and le.entry.measured is not None]
    return Board(measured, [le for le in view.entries if le.entry.kind == "audit"], warnings)


def load_entries(*, results_dir: str | Path | None = None, leaderboard_dir: str | Path | None = None,
                 protocol: str | None = None) -> tuple[list[LoadedEntry], list[str]]:
    """The measured entries of :func:`load_board` and its warnings."""
    board = load_board(results_dir=results_dir, leaderboard_dir=leaderboard_dir, protocol=protocol)
    return board.entries, board.warnings


def standings(entries: Sequence[LoadedEntry], audits: Sequence[LoadedEntry]) -> dict[str, str]:
    """Each measured entry's status in its suite's table, as ``zsrbench table`` ranks them (``ranked``, or why
    not), by entry slug. ``entries`` should hold every suite of the models (a ranking is their worst case)."""
    from zsrbench.leaderboard import tables

    ts = tables.build_tables(list(entries), audits=list(audits), ranking=False)
    return {r.entry: r.status or RANKED for g in ts.groups for r in g.rows if r.kind == "measured"}


def bars_standing(board: Board, chosen: Sequence[LoadedEntry]) -> dict[str, str]:
    """The status of each of ``chosen``, ranked against every suite of its model under its protocol version."""
    versions = {(le.entry.protocol.name, le.entry.protocol.version) for le in chosen}
    models = {le.entry.model.id for le in chosen}
    evidence = [le for le in board.entries if le.entry.model.id in models
                and (le.entry.protocol.name, le.entry.protocol.version) in versions]
    return standings(evidence, board.audits)


def status_head(status: str) -> str:
    """The first words of a status (``unreliable: gradient masking``): up to its first parenthesis, semicolon or
    middle dot."""
    return re.split(r" \(|; | · ", status, maxsplit=1)[0]


def marked(name: str, statuses: Sequence[tuple[str | None, str | None]]) -> str:
    """``name`` with the reasons it is not ranked, from ``(ε text, status)`` pairs of its plotted entries:
    ``TeCoA (unreliable: gradient masking)``, or ``… at ε = 1/255`` when it is ranked at another ε. A ranked (or
    unknown) status adds nothing; a rank number is never shown."""
    unranked = [(eps, status_head(st)) for eps, st in statuses if st and st != RANKED]
    if not unranked:
        return name
    reasons = "; ".join(dict.fromkeys(head for _, head in unranked))
    if len(unranked) == len([st for _, st in statuses if st]):
        return f"{name} ({reasons})"
    return f"{name} ({reasons} at ε = {', '.join(dict.fromkeys(str(eps) for eps, _ in unranked))})"


def choose(entries: Sequence[LoadedEntry], sel: Selection, *, where: str = "the leaderboard",
           audits: Sequence[LoadedEntry] | None = None) -> Chosen:
    """Narrow ``entries`` to one protocol version, one sample set, one suite and the asked-for models. With
    ``audits`` (the board's audit entries; empty for raw results), each chosen entry's status is looked up."""
    from zsrbench.leaderboard.combine import suite_order
    from zsrbench.registry import PROTOCOLS, load_builtins

    load_builtins()
    mine = [le for le in entries if le.entry.protocol.name == sel.protocol]
    if not mine:
        PROTOCOLS.get(sel.protocol)  # a typo is an unknown protocol, not an empty plot
        raise ZsrError(f"{where} has no measured entry of protocol '{sel.protocol}'. Measure some with "
                       f"`zsrbench run --protocol {sel.protocol}`, or point at other results with --results-dir or "
                       "--leaderboard-dir.")
    versions = sorted({le.entry.protocol.version for le in mine})
    if sel.version == "latest":
        version = versions[-1]
    else:
        text = str(sel.version).lower().removeprefix("v")
        if not text.isdigit() or int(text) not in versions:
            raise ZsrError(f"--protocol-version {sel.version}: {where} has {sel.protocol} entries of version(s) "
                           f"{', '.join(map(str, versions))}; pass one of them or latest.")
        version = int(text)
    mine = [le for le in mine if le.entry.protocol.version == version]
    evidence = list(mine)  # every suite of the version: the ranking is the worst case over them
    subsets = sorted({le.entry.protocol.subset or "full" for le in mine})
    subset = sel.subset or ("full" if "full" in subsets else subsets[0] if len(subsets) == 1 else None)
    if subset is None or subset not in subsets:
        raise ZsrError(f"{where} has {sel.protocol} v{version} entries of the sample sets {', '.join(subsets)}"
                       + (f", not '{sel.subset}'" if sel.subset else "") + "; choose one with --subset (full: the full "
                       "test sets). Numbers of different sample sets are never plotted together.")
    mine = [le for le in mine if (le.entry.protocol.subset or "full") == subset]
    standard = [le for le in mine if le.entry.kind != "measured" or le.entry.protocol.variant is None]
    if not any(le.entry.kind == "measured" for le in standard) and any(le.entry.kind == "measured" for le in mine):
        raise ZsrError(f"{where} has only experiments (variants: "
                       f"{', '.join(sorted({str(le.entry.protocol.variant) for le in mine}))}) of {sel.protocol} "
                       f"v{version} ({subset}); plots show the protocol's standard evaluation: run it with the "
                       "protocol's default settings.")
    mine = standard  # an experiment (other settings) is never drawn beside the standard evaluation
    suites = sorted({le.entry.suite for le in mine}, key=suite_order)
    required = PROTOCOLS.get(sel.protocol).required_suites if sel.protocol in PROTOCOLS else ()
    suite = sel.attack or (suites[0] if len(suites) == 1 else next((s for s in required if s in suites), None))
    if suite is None or suite not in suites:
        raise ZsrError(f"{where} has {sel.protocol} v{version} ({subset}) entries of the suites {', '.join(suites)}"
                       + (f", not '{sel.attack}'" if sel.attack else "") + "; choose one with --attack.")
    mine = [le for le in mine if le.entry.suite == suite]
    if sel.models:
        wanted = [w.lower() for w in sel.models]
        mine = [le for le in mine if any(w in le.entry.model.id.lower() or w == (le.entry.model.defense or "").lower()
                                         for w in wanted)]
        if not mine:
            raise ZsrError(f"No {sel.protocol} v{version} {suite} entry is of a model matching --models "
                           f"{','.join(sel.models)}; `zsrbench table --protocol {sel.protocol}` lists the models.")
    chosen = Chosen(mine, suite, None if subset == "full" else subset, version, proxy=protocol_proxy(sel.protocol))
    if audits is not None:
        models = {le.entry.model.id for le in mine}
        chosen.standing = standings([le for le in evidence if le.entry.model.id in models], audits)
    return chosen


def match_entries(entries: Sequence[LoadedEntry], names: Sequence[str], *, where: str = "the leaderboard"
                  ) -> list[LoadedEntry]:
    """The entries named by ``names``: a slug, ``protocol/slug`` or a part of a slug that names one entry."""
    if not names:
        raise ZsrError("Name at least one entry to plot (its name as `zsrbench table` shows it, or a unique part).")
    out = []
    keys = {f"{le.entry.protocol.name}/{le.entry.entry}": le for le in entries}
    for name in names:
        exact = [le for k, le in keys.items() if name in (k, le.entry.entry)]
        hits = exact or [le for k, le in keys.items() if name.lower() in k.lower()]
        if len(hits) == 1:
            out.append(hits[0])
            continue
        if not hits:
            close = difflib.get_close_matches(name, [le.entry.entry for le in entries], n=3, cutoff=0.4)
            hint = f" Did you mean {', '.join(close)}?" if close else " `zsrbench table` lists the entries."
            raise ZsrError(f"No measured entry of {where} matches '{name}'.{hint}")
        listed = ", ".join(f"{le.entry.protocol.name}/{le.entry.entry}" for le in hits[:8])
        raise ZsrError(f"'{name}' matches {len(hits)} entries ({listed}{' …' if len(hits) > 8 else ''}); be more "
                       "specific.")
    return out


# --- the numbers (as the tables compute them) ----------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """An accuracy (a fraction; a normalised average may be below 0) and its 95% interval."""

    value: float
    lo: float | None
    hi: float | None


def average_datasets(e: LeaderboardEntry, average: str) -> list[str]:
    """The datasets an average runs over: the protocol's, without the source task for ``zero-shot``."""
    if average not in AVERAGES:
        raise ZsrError(f"--average takes {' or '.join(AVERAGES)}; got {average!r}.")
    ds = list(e.protocol.datasets)
    train = e.protocol.train_dataset
    return [d for d in ds if d != train] if average == "zero-shot" and train in ds else ds


def accuracy(e: LeaderboardEntry, metric: str, *, average: str = "zero-shot", dataset: str | None = None
             ) -> Value | None:
    """``metric`` ("clean" or "robust") of entry ``e``: on one ``dataset`` (Wilson interval) or averaged over its
    protocol's datasets (normalised when the protocol averages normalised accuracies; stratified bootstrap
    interval). None when the entry lacks a dataset the number needs."""
    from zsrbench.leaderboard import rows

    assert e.measured is not None
    ms = e.measured.datasets
    if dataset is not None:
        m = ms.get(dataset)
        if m is None:
            return None
        return Value(getattr(m.metrics, f"{metric}_accuracy"), *rows.dataset_interval(m, metric))
    cols = average_datasets(e, average)
    if not cols or any(d not in ms for d in cols):
        return None
    norm = e.protocol.normalised_average
    attr = f"{metric}_normalised" if norm else f"{metric}_accuracy"
    value = sum(getattr(ms[d].metrics, attr) for d in cols) / len(cols)
    return Value(value, *rows.average_interval([ms[d] for d in cols], metric, norm))


def metric_label(e: LeaderboardEntry, metric: str, *, average: str, dataset: str | None) -> str:
    if dataset is not None:
        return f"{metric} accuracy on {dataset} (%)"
    norm = " normalised" if e.protocol.normalised_average else ""
    scope = "zero-shot average" if average == "zero-shot" and e.protocol.train_dataset in e.protocol.datasets \
        else "average"
    return f"{metric}: {scope} of{norm} accuracy (%)"


def labels(entries: Sequence[LoadedEntry]) -> dict[str, str]:
    """A short label per model id: the defense name, with the digest's start where two models share it."""
    by_defense: dict[str, set[str]] = defaultdict(set)
    for le in entries:
        by_defense[le.entry.model.defense or le.entry.model.id].add(le.entry.model.id)
    out = {}
    for le in entries:
        mid = le.entry.model.id
        name = le.entry.model.defense or mid
        out[mid] = name if len(by_defense[name]) == 1 else f"{name} ({mid.rsplit('/', 1)[-1][:6]})"
    return out


def _eps_value(text: str | None) -> float:
    from zsrbench.eps import parse_eps

    return float(parse_eps(text))  # type: ignore[arg-type]


def _half_widths(v: Value) -> tuple[float, float]:
    """How far the 95% interval reaches below and above the value, in percentage points (0 without one)."""
    lo = 100 * (v.value - v.lo) if v.lo is not None else 0.0
    hi = 100 * (v.hi - v.value) if v.hi is not None else 0.0
    return max(lo, 0.0), max(hi, 0.0)


def _err(v: Value) -> tuple[list[float], list[float]]:
    lo, hi = _half_widths(v)
    return [lo], [hi]


def _note(fig, e: LeaderboardEntry, proxy: str | None = None) -> None:
    """The caption under a plot: what the error bars are (and what normalised means); what a proxy protocol is."""
    import textwrap

    norm = " Normalised accuracy: (acc − chance) / (1 − chance)." if e.protocol.normalised_average else ""
    what = f"\n{textwrap.fill(f'{e.protocol.name} is {proxy}.', CAPTION_WIDTH)}" if proxy else ""
    fig.subplots_adjust(bottom=CAPTION_BOTTOM + CAPTION_LINE * what.count("\n"))
    fig.text(0.01, 0.01, "Error bars: 95% intervals (Wilson per dataset; stratified bootstrap over samples for "
             f"averages).{norm}{what}", fontsize=7, ha="left", va="bottom")


def _style(ax) -> None:
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


# --- robust accuracy vs ε ------------------------------------------------------------------------------------


@dataclass
class Series:
    label: str
    model_id: str
    points: list[tuple[float, Value]]  # (ε in units of 1/255, robust); (0, clean) first when known
    legend: str = ""  # the label, with the reason the model is not ranked (see :func:`marked`)


def eps_series(chosen: Chosen, *, average: str = "zero-shot", dataset: str | None = None) -> tuple[list[Series], list[str]]:
    """One series per model: its robust accuracy at each ε it was measured at, its clean accuracy at ε = 0."""
    names = labels(chosen.entries)
    by_model: dict[str, list[LoadedEntry]] = defaultdict(list)
    for le in chosen.entries:
        by_model[le.entry.model.id].append(le)
    series, warnings = [], []
    for mid, les in by_model.items():
        les = sorted(les, key=lambda le: _eps_value(le.entry.eps_text))
        points = []
        for le in les:
            v = accuracy(le.entry, "robust", average=average, dataset=dataset)
            if v is None:
                warnings.append(f"{le.entry.entry}: lacks a dataset of the {dataset or average + ' average'}; "
                                "left out")
                continue
            points.append((_eps_value(le.entry.eps_text), v))
        clean = accuracy(les[0].entry, "clean", average=average, dataset=dataset)
        if clean is not None and points:
            points.insert(0, (0.0, clean))
        if points:
            legend = marked(names[mid], [(le.entry.eps_text, chosen.standing.get(le.entry.entry)) for le in les])
            series.append(Series(names[mid], mid, points, legend))
    return series, warnings


def eps_figure(chosen: Chosen, *, average: str = "zero-shot", dataset: str | None = None):
    series, warnings = eps_series(chosen, average=average, dataset=dataset)
    if not series:
        raise ZsrError("Nothing to plot: no entry has every dataset the number needs (see the warnings); choose "
                       "another --dataset or --average.")
    first = chosen.entries[0].entry
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    ticks = sorted({x for s in series for x, _ in s.points})
    for i, s in enumerate(series):
        xs = [x for x, _ in s.points]
        ys = [100 * v.value for _, v in s.points]
        lo, hi = zip(*(_half_widths(v) for _, v in s.points))
        ax.errorbar(xs, ys, yerr=[list(lo), list(hi)], marker="o", markersize=4, capsize=3, linewidth=1.4,
                    label=s.legend or s.label, color=f"C{i % 10}")
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0\n(clean)" if t == 0 else f"{t:g}/255" for t in ticks])
    ax.set_xlabel("ε (L∞)")
    ax.set_ylabel(metric_label(first, "robust", average=average, dataset=dataset))
    subset = f" · {chosen.subset} subset" if chosen.subset else ""
    ax.set_title(f"{first.protocol.name} v{chosen.version}{subset} · {chosen.suite}: robust accuracy vs ε",
                 fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    _style(ax)
    _note(fig, first, chosen.proxy)
    return fig, warnings


# --- clean vs robust -----------------------------------------------------------------------------------------


def pick_eps(chosen: Chosen, eps: str | None) -> str:
    """The ε of a trade-off plot: the one asked for, the only one measured, else the protocol's own ε."""
    from zsrbench.eps import eps_text
    from zsrbench.eps import normalise_eps
    from zsrbench.registry import PROTOCOLS

    have = sorted({le.entry.eps_text for le in chosen.entries if le.entry.eps_text}, key=_eps_value)
    if eps is not None:
        want = normalise_eps(eps)
        if want not in have:
            raise ZsrError(f"No {chosen.suite} entry at ε = {want}; the entries are at {', '.join(have)}. Pass one "
                           "of them with --eps.")
        return str(want)
    if len(have) == 1:
        return have[0]
    own = eps_text(PROTOCOLS.get(chosen.entries[0].entry.protocol.name).eps)
    if own in have:
        return own
    raise ZsrError(f"The entries are at several ε ({', '.join(have)}); choose one with --eps.")


def tradeoff_figure(chosen: Chosen, *, eps: str | None = None, average: str = "zero-shot",
                    dataset: str | None = None):
    at = pick_eps(chosen, eps)
    names = labels(chosen.entries)
    points, warnings = [], []
    for le in chosen.entries:
        if le.entry.eps_text != at:
            continue
        c = accuracy(le.entry, "clean", average=average, dataset=dataset)
        r = accuracy(le.entry, "robust", average=average, dataset=dataset)
        if c is None or r is None:
            warnings.append(f"{le.entry.entry}: lacks a dataset of the {dataset or average + ' average'}; left out")
            continue
        points.append((marked(names[le.entry.model.id], [(at, chosen.standing.get(le.entry.entry))]), c, r))
    if not points:
        raise ZsrError("Nothing to plot: no entry has every dataset the number needs; choose another --dataset or "
                       "--average.")
    first = chosen.entries[0].entry
    fig = new_figure(5.2, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, c, r) in enumerate(points):
        ax.errorbar([100 * c.value], [100 * r.value], xerr=_err(c), yerr=_err(r), marker="o", markersize=5,
                    capsize=3, linewidth=1.2, color=f"C{i % 10}", label=name)
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    if max(x0, y0) < min(x1, y1):  # the diagonal crosses the plotted area
        ax.plot((max(x0, y0), min(x1, y1)), (max(x0, y0), min(x1, y1)), linestyle=":", color="#888888",
                linewidth=1, label="robust = clean")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel(metric_label(first, "clean", average=average, dataset=dataset))
    ax.set_ylabel(metric_label(first, "robust", average=average, dataset=dataset))
    subset = f" · {chosen.subset} subset" if chosen.subset else ""
    ax.set_title(f"{first.protocol.name} v{chosen.version}{subset} · {chosen.suite} · ε = {at}: clean vs robust",
                 fontsize=10)
    ax.legend(fontsize=7.5, frameon=False, loc="center left", bbox_to_anchor=(1.02, 0.5))
    _style(ax)
    _note(fig, first, chosen.proxy)
    return fig, warnings


# --- per-dataset bars ----------------------------------------------------------------------------------------


def _bars(ax, le: LoadedEntry, status: str | None = None) -> None:
    import numpy as np

    e = le.entry
    assert e.measured is not None
    ms = e.measured.datasets
    order = [d for d in e.protocol.datasets if d in ms] + [d for d in ms if d not in e.protocol.datasets]
    x = np.arange(len(order))
    w = 0.38
    for k, (metric, color) in enumerate((("clean", CLEAN_COLOR), ("robust", ROBUST_COLOR))):
        vals = [accuracy(e, metric, dataset=d) for d in order]
        ys = [100 * v.value for v in vals]
        lo = [_err(v)[0][0] for v in vals]
        hi = [_err(v)[1][0] for v in vals]
        ax.bar(x + (k - 0.5) * w, ys, w, yerr=[lo, hi], capsize=2, color=color, label=metric,
               error_kw={"linewidth": 0.8})
    for i, d in enumerate(order):  # chance level of each dataset
        ax.hlines(100 * ms[d].metrics.chance, i - 2 * w * 0.6, i + 2 * w * 0.6, colors="#d62728", linewidth=1,
                  linestyles="--", label="chance" if i == 0 else None)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{d} (source)" if d == e.protocol.train_dataset else d for d in order], rotation=30,
                       ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    n = sorted({ms[d].metrics.n for d in order})
    summary = []
    for metric in ("clean", "robust"):
        v = accuracy(e, metric, average="zero-shot")
        if v is not None and v.lo is not None and v.hi is not None:
            summary.append(f"{metric} {100 * v.value:.1f} ± {100 * (v.hi - v.lo) / 2:.1f}")
    norm = "normalised " if e.protocol.normalised_average else ""
    scope = "zero-shot " if e.protocol.train_dataset in e.protocol.datasets else ""
    subset = f" · {e.protocol.subset} subset" if e.protocol.subset else ""
    name = marked(e.model.name, [(e.eps_text, status)])
    ax.set_title(f"{name} · {e.protocol.name} v{e.protocol.version}{subset} · {e.suite} · ε = {e.eps_text}"
                 f" · n = {'/'.join(map(str, n))} per dataset\n"
                 + (f"{scope}{norm}average: {'; '.join(summary)}" if summary else ""), fontsize=8.5)
    ax.legend(fontsize=7.5, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _style(ax)


def bars_figure(entries: Sequence[LoadedEntry], standing: dict[str, str] | None = None):
    """Per-dataset clean and robust accuracy (Wilson 95% intervals, chance marked) of each entry, one panel
    each; ``standing`` (entry slug -> status) marks the models that are not ranked."""
    if not entries:
        raise ZsrError("No entry to plot.")
    width = max(6.0, 0.75 * max(len(le.entry.measured.datasets) for le in entries) + 2.5)  # type: ignore[union-attr]
    height = 3.6 * len(entries)
    fig = new_figure(width, height)
    for i, le in enumerate(entries, start=1):
        _bars(fig.add_subplot(len(entries), 1, i), le, (standing or {}).get(le.entry.entry))
    fig.subplots_adjust(hspace=0.75, bottom=1.25 / height, top=1 - 0.55 / height)
    proxies = {n: text for n in dict.fromkeys(le.entry.protocol.name for le in entries) if (text := protocol_proxy(n))}
    what = "".join(f" {name} is {text}." for name, text in proxies.items())
    fig.text(0.01, 0.05 / height, "Error bars: Wilson 95% intervals; dashed: chance level; ± in the titles: half the "
             f"95% stratified bootstrap interval of the average.{what}", fontsize=7, ha="left", va="bottom",
             wrap=True)
    return fig


def entry_bars(loaded_entry: LoadedEntry, out_path: str | Path, status: str | None = None) -> Path:
    """Draw the per-dataset clean/robust bars of one leaderboard entry to ``out_path`` (PNG or SVG by its
    suffix), written atomically; returns the path. ``status``: the entry's status in the tables (the reason is
    shown next to the model when it is not ranked)."""
    if loaded_entry.entry.kind != "measured" or loaded_entry.entry.measured is None:
        raise ZsrError(f"Entry {loaded_entry.entry.entry} is {loaded_entry.entry.kind}: per-dataset bars need a "
                       "measured entry.")
    (out,) = resolve_outputs([out_path])
    standing = {loaded_entry.entry.entry: status} if status else None
    write_files([(out.path, render(bars_figure([loaded_entry], standing), out.format))])
    return out.path
