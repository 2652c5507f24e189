"""Leaderboard tables and result records as tidy :class:`pandas.DataFrame` objects (public API).

* :func:`table_frame`: a :class:`~zsrbench.leaderboard.table_model.TableSet` (what ``zsrbench table`` shows), one
  row per table line × column (dataset or average) × metric, with the line's model, source, rank, status and
  audit, and the cell's value and 95% interval bounds; the group's ``proxy`` (what a proxy protocol is) and
  ``dataset_notes`` (``<dataset>: <note>`` joined by `` | ``); for a reported line the protocol its source used
  (``reported_relation``, ``reported_attack``, ``reported_precision``, ``reported_datasets``,
  ``reported_samples``, ``reported_baselines``) and ``vs_self_reported`` (its difference to the authors' own
  row's average, in points);
* :func:`records_frame`: result records (``zsrbench run``'s JSON files, e.g. from
  :func:`zsrbench.leaderboard.records.iter_records`), one row per record × metric (clean, the suite's worst
  case and, for a suite of several attacks, each attack) with its Wilson interval;
* :func:`wide_frame` / :func:`to_csv`: the layout of ``zsrbench table --csv`` (one line per table row and
  metric, ``<column>``, ``<column>_lo``, ``<column>_hi`` for every dataset and average), made by pivoting
  :func:`table_frame`.

Accuracies are in percent (floats; NaN where a table shows "–"), like every rendering of the tables. Only CSV
goes through pandas: markdown, LaTeX and HTML stay with :mod:`zsrbench.leaderboard.render`, because they print
``±`` intervals, marks, significance groups and footnotes per table group, which pandas' own exporters would
need tabulate or jinja2 for and still not lay out.

pandas is imported by this module only, so the rest of zsrbench does not pay for it.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import pandas as pd

from zsrbench import stats
from zsrbench.leaderboard.schema import ResultRecord
from zsrbench.leaderboard.table_model import Cell, Group, Row, TableSet

# a reported line's protocol as its source ran it (Row.reported_protocol): column -> key
REPORTED_KEYS = {"reported_relation": "relation", "reported_attack": "attack_used", "reported_precision": "precision",
                 "reported_datasets": "datasets", "reported_samples": "samples", "reported_baselines": "baselines"}
REPORTED_COLUMNS = list(REPORTED_KEYS)
# the columns that describe one line of a table (as in ``zsrbench table --csv``), in order
LINE_COLUMNS = ["protocol", "protocol_version", "subset", "variant", "proxy", "table", "suite", "eps", "dataset_notes",
                "metric", "rank", "group", "model", "kind", "source", "status", *REPORTED_COLUMNS, "vs_self_reported",
                "audit", "entry", "revision", "entries"]
CELL_COLUMNS = ["column", "is_average", "value", "lo", "hi", "cell_marks"]
TIDY_COLUMNS = ["line", *LINE_COLUMNS, *CELL_COLUMNS, "marks", "notes"]
RECORD_COLUMNS = ["model", "defense", "architecture", "protocol", "protocol_version", "subset", "dataset", "suite",
                  "eps", "metric", "attack", "value", "lo", "hi", "normalised", "n", "num_classes", "chance",
                  "n_nonfinite", "created_at"]
INT_COLUMNS = ("protocol_version", "rank", "revision")


def _pct(x: float | None) -> float:
    return math.nan if x is None else 100.0 * x


def _cell(c: Cell | None) -> tuple[float, float, float, str]:
    if c is None or c.value is None:
        return math.nan, math.nan, math.nan, "" if c is None else "".join(c.marks)
    lo, hi = (c.lo, c.hi) if c.lo is not None and c.hi is not None else (None, None)
    return _pct(c.value), _pct(lo), _pct(hi), "".join(c.marks)


def _reported(r: Row) -> dict[str, Any]:
    """A reported line's protocol columns (empty for a measured line); ``vs_self_reported`` in points."""
    lab = r.reported_protocol or {}
    vs = lab.get("vs_self_reported") or {}
    return {**{col: lab.get(key) or "" for col, key in REPORTED_KEYS.items()},
            "vs_self_reported": vs.get("difference", math.nan)}


def _line(g: Group, r: Row, metric: str) -> dict[str, Any]:
    cells = r.cells[metric]
    return {
        "protocol": g.protocol, "protocol_version": g.version, "subset": g.subset or "", "variant": g.variant or "",
        "proxy": g.proxy or "", "table": g.kind, "suite": g.suite, "eps": g.eps_text or "",
        "dataset_notes": " | ".join(g.dataset_note_lines()), "metric": metric, "rank": r.rank, "group": r.group or "",
        "model": r.label, "kind": r.kind, "source": r.source_text if r.kind == "reported" else r.source,
        "status": r.status or "", **_reported(r), "audit": r.audit or "", "entry": r.entry, "revision": r.revision,
        "entries": " ".join(r.entries), "marks": "".join(sorted({m for c in cells.values() for m in c.marks})),
        "notes": " | ".join(r.notes[metric]),
    }


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    for c in INT_COLUMNS:
        if c in df.columns:
            df[c] = df[c].astype("Int64")  # nullable: an unranked line has no rank, an in-memory entry no revision
    return df


def table_frame(ts: TableSet) -> pd.DataFrame:
    """One row per table line × column × metric (tidy): ``line`` numbers the lines in table order (a line is
    one table row under one metric), ``column`` is a dataset or an average key (``avg``, ``avg_zs``;
    ``is_average``), ``value``/``lo``/``hi`` the accuracy and its 95% interval in % (NaN: none), ``cell_marks``
    the cell's marks, ``marks`` and ``notes`` those of the whole line."""
    rows: list[dict[str, Any]] = []
    n = 0
    for g in ts.groups:
        averages = {k for k, _ in g.avg_columns}
        for metric in ts.metrics:
            for r in g.rows:
                line = _line(g, r, metric)
                for key in dict.fromkeys([*(k for k, _ in g.columns), *r.cells[metric]]):
                    value, lo, hi, marks = _cell(r.cells[metric].get(key))
                    rows.append({"line": n, **line, "column": key, "is_average": key in averages, "value": value,
                                 "lo": lo, "hi": hi, "cell_marks": marks})
                n += 1
    return _typed(pd.DataFrame(rows, columns=TIDY_COLUMNS))


def _value_columns(ts: TableSet) -> list[str]:
    """Every dataset of every group (first-seen order), then every average key: the CSV's value columns."""
    datasets: list[str] = []
    avgs: list[str] = []
    for g in ts.groups:
        datasets += [d for d in g.datasets if d not in datasets]
        avgs += [k for k, _ in g.avg_columns if k not in avgs]
    return [*datasets, *avgs]


def wide_frame(ts: TableSet) -> pd.DataFrame:
    """The ``zsrbench table --csv`` layout: one row per table line, the line's columns, then ``<column>``,
    ``<column>_lo``, ``<column>_hi`` for every dataset and average (first-seen order over the groups), then
    ``marks`` and ``notes``."""
    tidy = table_frame(ts)
    keys = _value_columns(ts)
    value_cols = [f"{k}{s}" for k in keys for s in ("", "_lo", "_hi")]
    if tidy.empty:
        return pd.DataFrame(columns=[*LINE_COLUMNS, *value_cols, "marks", "notes"])
    lines = tidy.drop_duplicates("line").set_index("line")[[*LINE_COLUMNS, "marks", "notes"]]
    values = tidy.pivot(index="line", columns="column", values=["value", "lo", "hi"])
    values.columns = [f"{col}{'' if part == 'value' else '_' + part}" for part, col in values.columns]
    values = values.reindex(columns=value_cols)
    wide = lines[LINE_COLUMNS].join(values).join(lines[["marks", "notes"]])
    return _typed(wide.reset_index(drop=True))


def to_csv(ts: TableSet) -> str:
    """``zsrbench table --csv``: :func:`wide_frame` as CSV, accuracies with two decimals, empty where none."""
    return wide_frame(ts).to_csv(index=False, float_format="%.2f", na_rep="", lineterminator="\n")


def records_frame(records: Iterable[ResultRecord]) -> pd.DataFrame:
    """One row per record × metric: ``clean``, ``robust`` with ``attack`` = the suite (worst case over its
    attacks) and, when the suite has several attacks, ``robust`` once per attack. ``value``, ``lo``, ``hi``:
    accuracy and its 95% Wilson interval in %; ``normalised``: ``(acc − chance)/(1 − chance)`` in % (clean and
    worst-case rows)."""
    rows: list[dict[str, Any]] = []
    for rec in records:
        p, m = rec.protocol, rec.metrics
        base = {"model": rec.model.id, "defense": rec.model.defense, "architecture": rec.model.architecture,
                "protocol": p.name, "protocol_version": p.version, "subset": p.subset or "", "dataset": p.dataset,
                "suite": p.suite, "eps": p.eps_text, "n": m.n, "num_classes": m.num_classes, "chance": m.chance,
                "n_nonfinite": m.n_nonfinite, "created_at": rec.created_at}
        items: list[tuple[str, str, float, float | None]] = [
            ("clean", "", m.clean_accuracy, m.clean_normalised), ("robust", p.suite, m.robust_accuracy,
                                                                  m.robust_normalised)]
        if len(m.per_attack) > 1:
            items += [("robust", a, acc, None) for a, acc in m.per_attack.items()]
        for metric, attack, acc, norm in items:
            if m.n > 0:
                iv = stats.wilson(int(round(acc * m.n)), m.n)
                lo, hi = iv.lo, iv.hi
            else:
                lo = hi = None
            rows.append({**base, "metric": metric, "attack": attack, "value": _pct(acc), "lo": _pct(lo),
                         "hi": _pct(hi), "normalised": _pct(norm)})
    return _typed(pd.DataFrame(rows, columns=RECORD_COLUMNS))
