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

The parts: which entries (:mod:`.entries`), what a model is called and marked (:mod:`.names`), the numbers
(:mod:`.values`), the shared look (:mod:`.style`), and one module per plot kind (:mod:`.eps_curves`,
:mod:`.tradeoff`, :mod:`.bars`). This package holds the API the CLI, the site and the guide (docs/figures.md) use.
"""

from zsrbench.figures.plots.bars import bars_figure, entry_bars
from zsrbench.figures.plots.entries import (
    Board, Chosen, Selection, bars_standing, choose, load_board, load_entries, match_entries, standings,
)
from zsrbench.figures.plots.eps_curves import Series, eps_figure, eps_series
from zsrbench.figures.plots.names import marked
from zsrbench.figures.plots.tradeoff import tradeoff_figure

__all__ = [
    "Board", "Chosen", "Selection", "Series", "bars_figure", "bars_standing", "choose", "entry_bars", "eps_figure",
    "eps_series", "load_board", "load_entries", "marked", "match_entries", "standings", "tradeoff_figure",
]
