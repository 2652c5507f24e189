"""`zsrbench plot eps`: robust accuracy against ε, one line per model over the ε it was measured at (the
entries of an ε sweep), its clean accuracy at ε = 0, with 95% intervals."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from zsrbench.errors import ZsrError
from zsrbench.figures.output import new_figure
from zsrbench.figures.plots.entries import Chosen
from zsrbench.figures.plots.names import labels, marked
from zsrbench.figures.plots.style import caption, half_widths, style_axes
from zsrbench.figures.plots.values import Value, accuracy, eps_value, metric_label
from zsrbench.leaderboard.reading import LoadedEntry


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
        les = sorted(les, key=lambda le: eps_value(le.entry.eps_text))
        points = []
        for le in les:
            v = accuracy(le.entry, "robust", average=average, dataset=dataset)
            if v is None:
                warnings.append(f"{le.entry.entry}: lacks a dataset of the {dataset or average + ' average'}; "
                                "left out")
                continue
            points.append((eps_value(le.entry.eps_text), v))
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
        lo, hi = zip(*(half_widths(v) for _, v in s.points))
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
    style_axes(ax)
    caption(fig, first, chosen.proxy)
    return fig, warnings
