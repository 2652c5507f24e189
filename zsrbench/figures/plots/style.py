"""What every plot shares in how it is drawn: the bar colours, error bars from 95% intervals, the caption under
a plot and the look of its axes."""

from __future__ import annotations

from zsrbench.figures.plots.values import Value
from zsrbench.leaderboard.schema import LeaderboardEntry

CLEAN_COLOR, ROBUST_COLOR = "#9ecae1", "#08519c"
CAPTION_WIDTH = 110  # characters per line of a caption
CAPTION_BOTTOM, CAPTION_LINE = 0.2, 0.04  # the room under a plot for its caption, and for each further line


def half_widths(v: Value) -> tuple[float, float]:
    """How far the 95% interval reaches below and above the value, in percentage points (0 without one)."""
    lo = 100 * (v.value - v.lo) if v.lo is not None else 0.0
    hi = 100 * (v.hi - v.value) if v.hi is not None else 0.0
    return max(lo, 0.0), max(hi, 0.0)


def error_bars(v: Value) -> tuple[list[float], list[float]]:
    lo, hi = half_widths(v)
    return [lo], [hi]


def caption(fig, e: LeaderboardEntry, proxy: str | None = None) -> None:
    """The caption under a plot: what the error bars are (and what normalised means); what a proxy protocol is."""
    import textwrap

    norm = " Normalised accuracy: (acc − chance) / (1 − chance)." if e.protocol.normalised_average else ""
    what = f"\n{textwrap.fill(f'{e.protocol.name} is {proxy}.', CAPTION_WIDTH)}" if proxy else ""
    fig.subplots_adjust(bottom=CAPTION_BOTTOM + CAPTION_LINE * what.count("\n"))
    fig.text(0.01, 0.01, "Error bars: 95% intervals (Wilson per dataset; stratified bootstrap over samples for "
             f"averages).{norm}{what}", fontsize=7, ha="left", va="bottom")


def style_axes(ax) -> None:
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
