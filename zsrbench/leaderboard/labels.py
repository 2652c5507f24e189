"""Honest labels of leaderboard tables: what a table's protocol is, which columns say little, and what protocol
each published (reported) row actually used.

* A proxy protocol (``Protocol.proxy``: micro, synthetic) says what it is (:func:`protocol_proxy`).
* A dataset whose robust column says little about the models is noted (:func:`dataset_notes`): *saturated* where
  the protocol's undefended model is already ≥ 90% robust, *at chance* where every measured model's Wilson 95%
  interval reaches the dataset's chance level or lies below it.
* A reported row carries the protocol its source actually used (attack, precision, datasets, samples, baselines
  re-run or copied: ``zsrbench/reported_data/sources.json``) and its relation to the method: per method the
  authors' own (self-reported) row first, third parties' rows below with their difference in points
  (:func:`order_reported`).

Functions here read and fill the table model of :mod:`zsrbench.leaderboard.tables` (groups and rows); they never
build tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from zsrbench import stats
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.reading import LoadedEntry
from zsrbench.leaderboard.reported import NOT_STATED, SELF, THIRD_PARTY
from zsrbench.leaderboard.schema import ReportedData, ReportedNumbers
from zsrbench.leaderboard.table_model import AT_CHANCE, SATURATED, rank_value

if TYPE_CHECKING:
    from zsrbench.leaderboard.table_model import Group, Row
    from zsrbench.protocols import Protocol

SATURATED_AT = 0.90  # robust accuracy of the undefended model from which a dataset is "saturated"
LABEL_FACTS = (("attack", "attack_used"), ("precision", "precision"), ("datasets", "datasets"), ("samples", "samples"),
               ("baselines", "baselines"))  # (title, Row.reported_protocol key) of a reported row's status
REPORTED_FOOTER = ("Reported rows are published numbers, listed after the measured rows and never numbered: per "
                   "method the authors' own (self-reported) row first, third-party rows below it with their "
                   "difference to it in points; each row's status is the protocol its source actually used.")


def registered_protocol(name: str) -> "Protocol | None":
    """The registered :class:`zsrbench.protocols.Protocol` called ``name``; None when zsrbench does not know it."""
    import zsrbench.protocols  # noqa: F401  (registers tga16, fare, synthetic without importing torch)
    from zsrbench.registry import PROTOCOLS, load_builtins

    if name not in PROTOCOLS:
        load_builtins()  # micro and the other built-ins
    try:
        return PROTOCOLS.get(name)
    except ZsrError:
        return None


def protocol_proxy(name: str) -> str | None:
    """What the protocol is when it is not evidence about methods (``Protocol.proxy``); None for an unknown one."""
    proto = registered_protocol(name)
    return getattr(proto, "proxy", None) if proto is not None else None


def base_defense(name: str) -> str | None:
    """The defense of the protocol's undefended model (``Protocol.base_model``; an unknown protocol: the default,
    ``clip``)."""
    from zsrbench.protocols import Protocol

    proto = registered_protocol(name)
    return proto.base_model if proto is not None else Protocol.base_model


def _chances(members: Sequence[LoadedEntry]) -> dict[str, float]:
    """dataset -> chance level (1 / classes) as the measured entries record it."""
    out: dict[str, float] = {}
    for le in members:
        m = le.entry.measured
        if le.entry.kind == "measured" and m is not None:
            for d, dm in m.datasets.items():
                out.setdefault(d, dm.metrics.chance)
    return out


def _defense(model_id: str | None) -> str | None:
    """The defense part of a model id ``<defense>/<arch>/<digest>``."""
    return model_id.split("/")[0] if model_id else None


def dataset_notes(g: Group, members: Sequence[LoadedEntry]) -> dict[str, str]:
    """Datasets of ``g`` whose robust column says little about the models, with why (attack groups only).

    *saturated*: every row of the protocol's undefended model (defense :func:`base_defense`) has robust
    accuracy ≥ 90% there. *at chance*: every measured row's Wilson 95% interval of robust accuracy reaches
    the dataset's chance level (1 / classes) or lies below it, i.e. no model is distinguishable from guessing.
    """
    if g.eps_text is None:
        return {}
    chance = _chances(members)
    base = base_defense(g.protocol)
    measured = [r for r in g.rows if r.kind == "measured"]
    notes: dict[str, str] = {}
    for d in g.datasets:
        cells = [(r, c) for r in measured if (c := r.cells["robust"].get(d)) is not None and c.value is not None]
        undefended = [(r, c) for r, c in cells if base is not None and _defense(r.model_id) == base]
        if undefended and all(c.value >= SATURATED_AT for _, c in undefended):  # type: ignore[operator]
            values = ", ".join(f"{r.label}: {c.number()}%" for r, c in undefended)
            notes[d] = f"{SATURATED}: the undefended model is already ≥ {SATURATED_AT:.0%} robust ({values})"
        elif cells and d in chance and all(c.lo is not None and c.lo <= chance[d] for _, c in cells):
            notes[d] = (f"{AT_CHANCE} for every model: each measured model's {stats.CONFIDENCE:.0%} Wilson interval "
                        f"of robust accuracy reaches chance ({100 * chance[d]:.2f}%) or lies below it")
    return notes


def _ref(row: Row) -> int:
    """The reference number of a reported row's source (``reported [3]`` -> 3)."""
    return int(row.source.rsplit("[", 1)[1].rstrip("]"))


def _metric_of(g: Group) -> str:
    """The metric a reported row is compared on: robust in an attack's table, clean in a clean one."""
    return "robust" if g.eps_text is not None else "clean"


def difference(g: Group, row: Row, authors: Row) -> dict | None:
    """``row``'s average minus the authors' (self-reported) row's, in points, on the first average both have."""
    metric = _metric_of(g)
    for key, label in g.avg_columns:
        a, b = row.cells[metric].get(key), authors.cells[metric].get(key)
        if a is not None and b is not None and a.value is not None and b.value is not None:
            return {"difference": round(100 * (a.value - b.value), 4), "metric": metric, "column": key,
                    "label": label, "reference": _ref(authors), "model": authors.label}
    return None


def _signed(points: float) -> str:
    """``−10.54`` / ``+1.20`` (a true minus sign)."""
    return f"{points:+.2f}".replace("-", "−")


def relation_text(row: Row, authors: Row | None) -> str:
    """The start of a reported row's status: whose evaluation it is and, for a third party's, how far it is
    from the authors' own number."""
    lab = row.reported_protocol or {}
    ref = f"[{_ref(row)}]"
    if lab.get("relation") == SELF:
        return f"{SELF} {ref}"
    if lab.get("relation") != THIRD_PARTY:
        return f"published {ref} (the source's relation to the method is not recorded)"
    vs = lab.get("vs_self_reported")
    if authors is None or vs is None:
        why = "no self-reported row" if authors is None else "no average shared with the authors' row"
        return f"third-party evaluation {ref} ({why})"
    whose = "the authors'" if authors.label == row.label else f"the authors' {authors.label}"
    column = "" if vs["column"] == "avg" else f" ({vs['label']})"
    return f"third-party re-evaluation {ref}: {_signed(vs['difference'])} points vs {whose} [{vs['reference']}]{column}"


def reported_status(row: Row, authors: Row | None) -> str:
    """A reported row's status: its relation to the method, then the protocol its source actually used."""
    lab = row.reported_protocol or {}
    facts = [f"{title}: {lab.get(key) or NOT_STATED}" for title, key in LABEL_FACTS]
    return " · ".join([relation_text(row, authors), "not ranked", *facts])


def order_reported(g: Group, rows: list[Row]) -> list[Row]:
    """Reported rows in per-method blocks (ordered by the block's lead value): the authors' own (self-reported)
    rows first, the other sources' rows below, each with its difference to the first self-reported row; every
    row gets its status (:func:`reported_status`)."""
    by_method: dict[str, list[Row]] = {}
    for r in rows:
        by_method.setdefault((r.reported_protocol or {}).get("method") or r.label, []).append(r)
    blocks = []
    for block in by_method.values():
        own = sorted([r for r in block if (r.reported_protocol or {}).get("relation") == SELF],
                     key=lambda r: (-rank_value(r), _ref(r)))
        others = sorted([r for r in block if all(r is not o for o in own)],
                        key=lambda r: (-rank_value(r), r.label, _ref(r)))
        authors = own[0] if own else None
        for r in others:
            if r.reported_protocol is not None and authors is not None:
                r.reported_protocol["vs_self_reported"] = difference(g, r, authors)
        for r in own:
            r.status = reported_status(r, None)
        for r in others:
            r.status = reported_status(r, authors)
        blocks.append(own + others)
    blocks.sort(key=lambda b: (-rank_value(b[0]), b[0].label))
    return [r for b in blocks for r in b]


def dataset_set(r: ReportedData, g: Group) -> str | None:
    """How many of the protocol's datasets the row's own per-dataset numbers cover (``15 of 16 (without
    imagenet)``); None when the source printed no per-dataset numbers."""
    nums: ReportedNumbers | None = getattr(r, _metric_of(g)) or r.robust or r.clean
    have = [d for d in g.datasets if nums is not None and d in nums.per_dataset]
    if not have:
        return None
    missing = [d for d in g.datasets if d not in have]
    return f"{len(have)} of {len(g.datasets)}" + (f" (without {', '.join(missing)})" if missing else "")


def reported_label(r: ReportedData, g: Group) -> dict:
    """The protocol a reported row's source actually used and the source's relation to the method, from
    ``zsrbench/reported_data/sources.json`` ("not stated" where the source does not say)."""
    from zsrbench.leaderboard import reported as rp

    return {"relation": rp.role(r.source_id, r.method), "method": r.method, "source_id": r.source_id,
            "attack": r.attack, "attack_used": rp.attack_used(r.source_id, r.attack, r.attack_description),
            "precision": rp.source_fact(r.source_id, "precision"),
            "datasets": dataset_set(r, g) or rp.source_fact(r.source_id, "datasets"),
            "samples": rp.source_fact(r.source_id, "samples"), "baselines": rp.source_fact(r.source_id, "baselines"),
            "vs_self_reported": None}


