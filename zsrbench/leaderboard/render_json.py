"""The leaderboard tables as data (``zsrbench table --json``): accuracies in % with their interval bounds
(``lo`` / ``hi``), every row's status, audit and notes, every group's footnotes, sources and honest labels."""

from __future__ import annotations

import json
from typing import Any

from zsrbench.leaderboard.table_model import Cell, TableSet


def to_data(ts: TableSet) -> dict[str, Any]:
    def pct(x: float | None) -> float | None:
        return None if x is None else round(100 * x, 6)

    def cell(c: Cell) -> dict[str, Any]:
        return {"value": pct(c.value), "marks": c.marks, "lo": pct(c.lo) if c.has_interval else None,
                "hi": pct(c.hi) if c.has_interval else None}

    return {
        "unit": "percent",
        "warnings": ts.warnings,
        "groups": [
            {
                "protocol": g.protocol, "protocol_version": g.version, "kind": g.kind, "subset": g.subset,
                "variant": g.variant,
                "title": g.title, "proxy": g.proxy, "suite": g.suite, "eps": g.eps_text,
                "datasets": g.datasets, "dataset_notes": g.dataset_notes, "train_dataset": g.train_dataset,
                "normalised_average": g.normalised,
                "average_columns": [{"key": k, "label": label} for k, label in g.avg_columns],
                "rows": [
                    {"rank": r.rank, "ranked": r.ranked, "group": r.group, "status": r.status, "audit": r.audit,
                     "model": r.label, "model_id": r.model_id, "kind": r.kind, "source": r.source, "source_text": r.source_text,
                     "entry": r.entry, "revision": r.revision, "entries": r.entries, "suites": r.suites,
                     "vs_above": r.vs_above, "reported_protocol": r.reported_protocol,
                     "notes": {m: r.notes[m] for m in ts.metrics},
                     **{m: {k: cell(c) for k, c in r.cells[m].items()} for m in ts.metrics}}
                    for r in g.rows
                ],
                "footnotes": {m: [{"mark": f.mark, "title": f.title, "items": f.items} for f in g.footnotes.get(m, [])]
                              for m in ts.metrics},
                "sources": g.sources,
                "footer": g.footer,
            }
            for g in ts.groups
        ],
    }


def to_json(ts: TableSet) -> str:
    return json.dumps(to_data(ts), indent=2, ensure_ascii=False) + "\n"
