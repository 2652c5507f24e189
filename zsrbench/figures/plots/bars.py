"""`zsrbench plot bars` and the site's entry figures: per-dataset clean and robust accuracy of one or more entries
(Wilson 95% intervals, chance marked, the averages in each panel's title)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from zsrbench.errors import ZsrError
from zsrbench.figures.output import new_figure, render, resolve_outputs, write_files
from zsrbench.figures.plots.names import marked
from zsrbench.figures.plots.style import CLEAN_COLOR, ROBUST_COLOR, error_bars, style_axes
from zsrbench.figures.plots.values import accuracy
from zsrbench.leaderboard.labels import protocol_proxy
from zsrbench.leaderboard.reading import LoadedEntry


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
        lo = [error_bars(v)[0][0] for v in vals]
        hi = [error_bars(v)[1][0] for v in vals]
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
    style_axes(ax)


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
