"""The tables ``zsrbench table`` prints for a loaded view of a leaderboard (or of raw results): the entries its
options select (protocol, attack suite or the worst case of several, ε, protocol version), built into tables with
the audit entries giving the rows their status."""

from __future__ import annotations

from zsrbench.leaderboard import combine, table_model, tables
from zsrbench.leaderboard.reading import StoreView
from zsrbench.leaderboard.table_model import TableSet


def view_tables(view: StoreView, *, protocol: str | None, attack: str | None, eps: str | None,
                worst_of: str | None, version: str, metric: str, include_reported: bool) -> tuple[TableSet, list[str]]:
    """The tables of ``view``: ``worst_of`` (suites, e.g. ``pgd,cw``) takes their per-sample worst case, else
    ``attack`` picks one suite; only ``version`` of each protocol is kept; ``metric`` is robust, clean or both.
    Returns the tables and the warnings to print before the tables' own (``TableSet.warnings``)."""
    warnings: list[str] = []
    audits = [le for le in view.entries if le.entry.kind == "audit"]  # they give rows a status; never rows
    shown = [le for le in view.entries if le.entry.kind != "audit"]
    cache = combine.FlagsCache()
    if worst_of is not None:
        suites = combine.parse_suites(worst_of)
        chosen = tables.select(shown, protocol=protocol, eps=eps)
        tables.require_suites(chosen, suites, protocol=protocol, eps=eps)
        entries, warnings = combine.worst_of(chosen, suites, cache)
    else:
        entries = tables.select(shown, protocol=protocol, attack=attack, eps=eps, include_reported=include_reported)
    entries, hidden = tables.select_version(entries, version)
    warnings += hidden
    evidence, _ = tables.select_version(tables.select(shown, protocol=protocol, eps=eps), version)
    # the default view starts with the ranking tables; --attack and --worst-of show just the tables asked for, and
    # number only the models the ranking rules rank (applied to every suite of the models, not just those shown)
    ts = tables.build_tables(entries, metrics=table_model.METRICS if metric == "both" else (metric,), audits=audits,
                             ranking=attack is None and worst_of is None, cache=cache, evidence=evidence)
    return ts, warnings
