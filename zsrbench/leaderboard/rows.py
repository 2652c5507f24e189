"""The rows of a leaderboard table: a group's columns for its protocol, a measured entry's row (numbers, 95%
intervals, marks and footnotes) and a published (reported) entry's row, as :mod:`.tables` and :mod:`.ranking`
put them into groups."""

from __future__ import annotations

from typing import Sequence

from zsrbench import stats
from zsrbench.leaderboard.entries import rev_name
from zsrbench.leaderboard.labels import protocol_proxy, reported_label
from zsrbench.leaderboard.reading import LoadedEntry
from zsrbench.leaderboard.schema import DatasetMeasurement, EntryProtocol, LeaderboardEntry, ReportedNumbers
from zsrbench.leaderboard.table_model import (
    DAGGER, DDAGGER, INTERVAL_NOTE, MARK_TITLES, METRICS, PRINTED_TOL, RANKING, SECTION, STAR, Cell, Footnote, Group,
    GroupKey, Row,
)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _protocol_for(entries: Sequence[LeaderboardEntry], warnings: list[str]) -> EntryProtocol:
    measured = [e.protocol for e in entries if e.kind == "measured"] or [e.protocol for e in entries]
    first = measured[0]
    datasets = list(first.datasets)
    for p in measured[1:]:
        extra = [d for d in p.datasets if d not in datasets]
        if extra or p.train_dataset != first.train_dataset or p.normalised_average != first.normalised_average:
            warnings.append(f"entries of {first.name} v{first.version} disagree on the protocol's datasets or averages; "
                            "showing the union of datasets")
            datasets += extra
    return first.model_copy(update={"datasets": datasets})


def new_group(key: GroupKey, members: Sequence[LoadedEntry], warnings: list[str]) -> tuple[Group, list[str]]:
    """An empty group for ``key`` with the protocol's columns; and the zero-shot datasets."""
    name, version, suite, eps_text, subset, variant = key
    proto = _protocol_for([m.entry for m in members], warnings)
    datasets = proto.datasets
    train = proto.train_dataset if proto.train_dataset in datasets else None
    zs = [d for d in datasets if d != train]
    zs_reported = any(
        m.entry.reported is not None and any(
            n is not None and n.average is not None and n.average_scope == "zero-shot"
            for n in (m.entry.reported.clean, m.entry.reported.robust))
        for m in members)
    norm = " (norm.)" if proto.normalised_average else ""
    avg_cols = [("avg", f"Avg{norm}")]
    if train or zs_reported:
        avg_cols.append(("avg_zs", f"Avg zero-shot{norm}"))
    g = Group(protocol=name, version=version, suite=suite, eps_text=eps_text, datasets=datasets, train_dataset=train,
              normalised=proto.normalised_average, avg_columns=avg_cols, subset=subset,
              kind=RANKING if suite == RANKING else "suite", variant=variant, proxy=protocol_proxy(name))
    return g, zs


def new_notes() -> dict[str, dict[str, list[str]]]:
    return {metric: {m: [] for m in MARK_TITLES} for metric in METRICS}


def merge_items(items: Sequence[str | tuple[str, str]]) -> list[str]:
    """Footnote items in first-seen order; a ``(model, text)`` note that several models share is one item
    naming them all (``text — 5 models: a, b, …``), so a fallback every model hit is listed once."""
    who: dict[str, list[str]] = {}
    order: list[str] = []
    for item in items:
        label, text = item if isinstance(item, tuple) else (None, item)
        if text not in who:
            who[text] = []
            order.append(text)
        if label is not None and label not in who[text]:
            who[text].append(label)
    out = []
    for text in order:
        labels = who[text]
        out.append(text if not labels else f"{labels[0]}, {text}" if len(labels) == 1
                   else f"{text} — {len(labels)} models: {', '.join(labels)}")
    return out


def finish_footnotes(g: Group, notes: dict[str, dict[str, list[str]]]) -> None:
    g.footnotes = {metric: [Footnote(m, MARK_TITLES[m], merge_items(items)) for m, items in by_mark.items() if items]
                   for metric, by_mark in notes.items()}
    if any(r.kind == "measured" for r in g.rows) and INTERVAL_NOTE not in g.footer:
        g.footer.append(INTERVAL_NOTE)


def _count(m: DatasetMeasurement, metric: str) -> tuple[int, int]:
    """(k, n) behind a measured accuracy (the accuracy is k / n of the flags)."""
    n = m.metrics.n
    return int(round(getattr(m.metrics, f"{metric}_accuracy") * n)), n


def dataset_interval(m: DatasetMeasurement, metric: str) -> tuple[float | None, float | None]:
    k, n = _count(m, metric)
    if n <= 0:
        return None, None
    iv = stats.wilson(k, n)
    return iv.lo, iv.hi


def average_interval(ms: Sequence[DatasetMeasurement], metric: str,
                     normalised: bool) -> tuple[float | None, float | None]:
    counts = [_count(m, metric) for m in ms]
    if not counts or any(n <= 0 for _, n in counts):
        return None, None
    iv = stats.bootstrap_average_counts([k for k, _ in counts], [n for _, n in counts],
                                        [m.metrics.chance for m in ms] if normalised else None)
    return iv.lo, iv.hi


def measured_row(le: LoadedEntry, g: Group, zs: list[str], notes: dict[str, dict[str, list[str]]]) -> Row:
    e = le.entry
    assert e.measured is not None
    label = e.model.name
    if e.suite.startswith("worst-of("):
        rev = "combined from flags"
    else:
        rev = f"measured {rev_name(e.revision)}" if le.file is not None else "measured"
    row = Row(label=label, kind="measured", source=rev, entry=e.entry, revision=e.revision if le.file else None,
              cells={m: {} for m in METRICS}, entries=[f"{e.entry}@{rev_name(e.revision)}"] if le.file else [],
              model_id=e.model.id)
    ds_map = e.measured.datasets
    for d in g.datasets:
        m = ds_map.get(d)
        if m is None:
            row.cells["robust"][d] = Cell(None)
            row.cells["clean"][d] = Cell(None)
            continue
        rmarks, cmarks = [], []
        warn = [*m.flags.fallbacks, *m.flags.autoattack_warnings]
        if warn:
            rmarks.append(DAGGER)
            notes["robust"][DAGGER].append((label, f"{d}: {'; '.join(warn)}"))
            row.add_note(["robust"], f"{DAGGER} {d}: {'; '.join(warn)}")
        if m.deviations:
            rmarks.append(DDAGGER)
            cmarks.append(DDAGGER)
            for metric in METRICS:
                notes[metric][DDAGGER].append((label, f"{d}: {'; '.join(m.deviations)}"))
            row.add_note(METRICS, f"{DDAGGER} {d}: {'; '.join(m.deviations)}")
        row.cells["robust"][d] = Cell(m.metrics.robust_accuracy, rmarks, *dataset_interval(m, "robust"))
        row.cells["clean"][d] = Cell(m.metrics.clean_accuracy, cmarks, *dataset_interval(m, "clean"))
    extra = [d for d in ds_map if d not in g.datasets]
    if extra:
        row.add_note(METRICS, f"not columns of the protocol: {', '.join(extra)}")
    for metric in METRICS:
        attr = f"{metric}_normalised" if g.normalised else f"{metric}_accuracy"
        for key, cols in (("avg", g.datasets), ("avg_zs", zs)):
            if key not in dict(g.avg_columns):
                continue
            vals = [getattr(ds_map[d].metrics, attr) for d in cols if d in ds_map]
            cell = Cell(_mean(vals), [], *average_interval([ds_map[d] for d in cols if d in ds_map], metric, g.normalised))
            if vals and len(vals) < len(cols):
                cell.marks.append(STAR)
                missing = [d for d in cols if d not in ds_map]
                text = f"{label}: {key.replace('avg_zs', 'zero-shot average').replace('avg', 'average')} over " \
                       f"{len(vals)} of {len(cols)} datasets (missing: {', '.join(missing)})"
                notes[metric][STAR].append(text)
                row.add_note([metric], f"{STAR} {text}")
            row.cells[metric][key] = cell
    return row


def reported_row(le: LoadedEntry, g: Group, zs: list[str], notes: dict[str, dict[str, list[str]]]) -> Row:
    e = le.entry
    r = e.reported
    assert r is not None
    if r.source not in g.sources:
        g.sources.append(r.source)
    ref = g.sources.index(r.source) + 1
    label = e.model.name
    row = Row(label=label, kind="reported", source=f"reported [{ref}]", entry=e.entry, revision=e.revision,
              cells={m: {} for m in METRICS}, source_text=r.source, rank=None,
              reported_protocol=reported_label(r, g))
    for note in r.notes:
        row.add_note(METRICS, note)
    for metric in METRICS:
        nums: ReportedNumbers | None = getattr(r, metric)
        per = nums.per_dataset if nums else {}
        for d in g.datasets:
            v = per.get(d)
            row.cells[metric][d] = Cell(None if v is None else v / 100.0)
        avg = Cell(None)
        avg_zs = Cell(None)
        if nums is not None and g.normalised:
            row.add_note([metric], "reported numbers are not normalised; no average shown")
        elif nums is not None:
            if nums.average is not None and nums.average_scope == "all":
                avg = Cell(nums.average / 100.0)
                mean = nums.per_dataset_mean
                if mean is not None and len(per) == len(g.datasets) and abs(nums.average - mean) > PRINTED_TOL:
                    avg.marks.append(SECTION)
                    why = "; ".join(nums.notes)
                    text = (f"{label} ({metric}, {r.source_id}): printed {nums.average:.2f}, mean of the printed "
                            f"per-dataset values {mean:.2f}" + (f" — {why}" if why else ""))
                    notes[metric][SECTION].append(text)
                    row.add_note([metric], f"{SECTION} {text}")
            elif all(d in per for d in g.datasets) and per:
                avg = Cell(_mean([per[d] for d in g.datasets]) / 100.0)  # type: ignore[operator]
            if nums.average is not None and nums.average_scope == "zero-shot":
                avg_zs = Cell(nums.average / 100.0)
                row.add_note([metric], "zero-shot average as printed by the source")
            elif zs and all(d in per for d in zs):
                avg_zs = Cell(_mean([per[d] for d in zs]) / 100.0)  # type: ignore[operator]
        row.cells[metric]["avg"] = avg
        if "avg_zs" in dict(g.avg_columns):
            row.cells[metric]["avg_zs"] = avg_zs
    return row
