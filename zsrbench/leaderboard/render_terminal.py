"""The leaderboard tables in a terminal (``zsrbench table`` without a format): rich tables, full when the terminal
is wide enough, else of the averages only; each row's status in full and the footnotes not printed yet under each
group."""

from __future__ import annotations

from typing import Any

from zsrbench.leaderboard.render_common import (
    DASH, METRIC_TITLES, audit_text, cell_text, column_labels, footnote_lines, rank_text,
)
from zsrbench.leaderboard.table_model import Cell, Group, Row, TableSet


def _short_status(r: Row) -> str:
    """The status in a word or two: ``ranked``, ``unreliable``, ``self-reported``, ``third-party`` …"""
    if r.kind == "reported":
        return (r.reported_protocol or {}).get("relation") or "reported"
    return (r.status or "").split(":")[0]


def _rich_cell(g: Group, key: str, cell: Cell | None) -> str:
    """Per-dataset cells without their interval (readable in a terminal); averages with ±."""
    return cell_text(cell, interval=key in dict(g.avg_columns))


def _rich_pre(g: Group, r: Row | None, narrow: bool = False) -> list[str]:
    """Terminal columns before the values: ranking tables keep a one-word status (details under the table),
    or none when the terminal is narrow."""
    if g.is_ranking:
        head = ["#", "Group", "Model"] if r is None else [rank_text(r), r.group or DASH, r.label]
        return head if narrow else head + ["Status" if r is None else _short_status(r)]
    head = ["#", "Model", "Source"] if r is None else [rank_text(r), r.label, r.source]
    return head if narrow else head + ["Status" if r is None else _short_status(r)]


def _rich_values(g: Group, r: Row, metrics: tuple[str, ...] | list[str], narrow: bool) -> list[str]:
    [metric] = metrics
    if narrow:  # averages only
        return [cell_text(r.cells[metric].get(k)) for k, _ in g.avg_columns]
    return [_rich_cell(g, k, r.cells[metric].get(k)) for k, _ in g.columns]


def _rich_table(g: Group, metrics: tuple[str, ...] | list[str], narrow: bool, title: str) -> Any:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(title), title_justify="left")
    for h in _rich_pre(g, None, narrow):
        t.add_column(h, justify="right" if h == "#" else "left", overflow="fold")
    labels = [label for _, label in (g.avg_columns if narrow else column_labels(g, metrics[0]))]
    rows = [[*_rich_pre(g, r, narrow), *_rich_values(g, r, metrics, narrow), audit_text(r)] for r in g.rows]
    first = len(_rich_pre(g, None, narrow))
    for i, label in enumerate(labels):
        t.add_column(escape(label), justify="right", min_width=max([5, *(len(row[first + i]) for row in rows)]))
    t.add_column("Audit")
    for r, row in zip(g.rows, rows):
        t.add_row(*map(escape, row), style=_rich_style(r))
    return t


def _width(g: Group, metric: str) -> int:
    heads = [*_rich_pre(g, None), *[label for _, label in column_labels(g, metric)], "Audit"]
    rows = [[*_rich_pre(g, r), *_rich_values(g, r, [metric], False), audit_text(r)] for r in g.rows]
    return 1 + sum(3 + max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(heads))


def _rich_style(r: Row) -> str | None:
    if r.kind == "reported":
        return "italic dim"
    if (r.status or "").startswith("unreliable"):
        return "red"
    return "dim" if r.rank is None else None


def _new_lines(lines: list[str], shown: set[str]) -> list[str]:
    """Footnote lines less the items printed under an earlier table; a heading left with no items says so."""
    out: list[str] = []
    for line in lines:
        if line.startswith("  - ") and line in shown:
            continue
        shown.add(line)
        out.append(line)
    compact: list[str] = []
    for i, line in enumerate(out):
        heading = not line.startswith("  ") and line.endswith(":")
        if heading and (i + 1 == len(out) or not out[i + 1].startswith("  ")):
            compact.append(line[:-1] + ": as listed above")
        else:
            compact.append(line)
    return compact


def to_rich(ts: TableSet, console: Any) -> None:
    """Full tables when the terminal is wide enough, else one compact table of averages per group."""
    if not ts.groups:
        console.print("No leaderboard entries match.")
        return
    narrow = False
    shown: set[str] = set()  # footnote items already printed under an earlier table
    for g in ts.groups:
        if g.proxy_line:
            console.print(g.proxy_line, highlight=False, markup=False, style="bold")
        if all(_width(g, m) <= console.width for m in ts.metrics):
            for metric in ts.metrics:
                console.print(_rich_table(g, [metric], False, f"{g.title} — {METRIC_TITLES[metric]}"))
        else:
            narrow = True
            for metric in ts.metrics:
                console.print(_rich_table(g, [metric], True, f"{g.title} — {METRIC_TITLES[metric]}, averages over "
                                                             f"{len(g.datasets)} datasets"))
        for r in g.rows:  # each row's status in full (a suite table: the rows that are not ranked, reported rows)
            if g.is_ranking or not r.ranked:
                console.print(f"  {r.label} — {r.source} — {r.status}", highlight=False, markup=False,
                              style=_rich_style(r))
        for line in _new_lines(footnote_lines(g, ts.metrics), shown):
            console.print(line, highlight=False, markup=False)
        console.print()
    if narrow:
        console.print("(per-dataset columns left out: the terminal is too narrow; use --markdown, --csv or --html)",
                      highlight=False, style="dim")
