"""`zsrbench plot tradeoff`: clean against robust accuracy at one ε, one point per model, with 95% intervals on
both axes and the diagonal where it is in view."""

from __future__ import annotations

from zsrbench.errors import ZsrError
from zsrbench.figures.output import new_figure
from zsrbench.figures.plots.entries import Chosen
from zsrbench.figures.plots.names import labels, marked
from zsrbench.figures.plots.style import caption, error_bars, style_axes
from zsrbench.figures.plots.values import accuracy, eps_value, metric_label


def pick_eps(chosen: Chosen, eps: str | None) -> str:
    """The ε of a trade-off plot: the one asked for, the only one measured, else the protocol's own ε."""
    from zsrbench.eps import eps_text
    from zsrbench.eps import normalise_eps
    from zsrbench.registry import PROTOCOLS

    have = sorted({le.entry.eps_text for le in chosen.entries if le.entry.eps_text}, key=eps_value)
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
        ax.errorbar([100 * c.value], [100 * r.value], xerr=error_bars(c), yerr=error_bars(r), marker="o",
                    markersize=5, capsize=3, linewidth=1.2, color=f"C{i % 10}", label=name)
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
    style_axes(ax)
    caption(fig, first, chosen.proxy)
    return fig, warnings
