"""Render :class:`~zsrbench.leaderboard.table_model.TableSet` as markdown, CSV, LaTeX, HTML, JSON or a rich table.

Values are accuracies in % with two decimals. Measured cells carry their 95% interval: ``±h`` (h = half the
interval's width, in points) in markdown, HTML and LaTeX; ``<column>_lo`` / ``<column>_hi`` in CSV; ``lo`` /
``hi`` in JSON. The terminal shows ``±h`` on the averages only, to stay readable. Marks (†, ‡, *, §) refer to
the footnotes under each table; ``[n]`` refers to the group's sources (reported numbers). Ranking tables add
the significance group; every table has the status (ranked, or why not: only a model the ranking rules rank has
a number, in any table; a reported row never has one, and its status is the protocol its source actually used
and, for a third party's row, its difference to the authors' own) and the audit verdict.

Honest labels, in every format: a proxy protocol's tables (micro, synthetic) say so directly under their title
(JSON ``proxy``, CSV column ``proxy``); a saturated or at-chance dataset is tagged in its column title and
explained under the table (JSON ``dataset_notes``, CSV column ``dataset_notes``).

:func:`render` picks the format; each has its module: :mod:`.render_markdown`, :mod:`.render_latex`,
:mod:`.render_html`, :mod:`.render_json`, CSV :mod:`.frame`, the terminal :mod:`.render_terminal`; the texts they
share are :mod:`.render_common`. ``zsrbench compare`` prints through :mod:`.render_compare`.
"""

from __future__ import annotations

from zsrbench.leaderboard.render_html import to_html
from zsrbench.leaderboard.render_json import to_json
from zsrbench.leaderboard.render_latex import to_latex
from zsrbench.leaderboard.render_markdown import to_markdown
from zsrbench.leaderboard.table_model import TableSet


def to_csv(ts: TableSet) -> str:
    """One line per table row and metric: the row's columns, then ``<column>``, ``<column>_lo``, ``<column>_hi``
    for every dataset and average, then marks and notes; built as a pandas DataFrame
    (:func:`zsrbench.leaderboard.frame.wide_frame`, the tidy :func:`~zsrbench.leaderboard.frame.table_frame`
    pivoted) and written by ``DataFrame.to_csv``."""
    from zsrbench.leaderboard.frame import to_csv as frame_csv

    return frame_csv(ts)


def render(ts: TableSet, fmt: str) -> str:
    return {"markdown": to_markdown, "csv": to_csv, "latex": to_latex, "html": to_html, "json": to_json}[fmt](ts)
