"""The worst case of several attack suites, from the per-sample flags alone (no re-run).

A sample is robust to ``worst-of(pgd,cw)`` when it is robust to every suite. This is only meaningful on the
same samples: the suites' records must have the same sample-index digest and the same labels, otherwise the
combination is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from zsrbench.errors import ZsrError
from zsrbench.leaderboard.schema import DatasetMeasurement, Flags, LeaderboardEntry, MeasuredData
from zsrbench.leaderboard.records import metrics_from_flags
from zsrbench.leaderboard.entries import measured_slug
from zsrbench.leaderboard.reading import LoadedEntry, read_flags_ref


class SampleMismatch(ZsrError):
    """Two suites (or two models) were measured on different samples: their flags cannot be paired."""


def combined_suite_name(suites: Sequence[str]) -> str:
    return f"worst-of({','.join(suites)})"


def parse_suites(text: str) -> list[str]:
    suites = [s.strip() for s in text.split(",") if s.strip()]
    if len(suites) < 2:
        raise ZsrError(f"--worst-of takes two or more attack suites separated by commas (e.g. pgd,cw); got {text!r}.")
    if len(set(suites)) != len(suites):
        raise ZsrError(f"--worst-of names a suite twice: {text!r}.")
    return suites


def combine_flags(parts: Sequence[dict[str, np.ndarray]], names: Sequence[str], where: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Worst case of the flags of several suites on the same samples (refused when the samples differ)."""
    labels = parts[0]["labels"]
    for name, f in zip(names[1:], parts[1:]):
        if f["labels"].shape != labels.shape or not np.array_equal(f["labels"], labels):
            raise SampleMismatch(f"Cannot combine {where}: the labels of '{names[0]}' and '{name}' differ, so they were not "
                           "measured on the same samples. Re-run both suites with the same --n-samples and --seed.")
    notes = []
    clean = np.logical_and.reduce([f["clean_correct"].astype(bool) for f in parts])
    differ = int((clean != parts[0]["clean_correct"].astype(bool)).sum())
    if differ:
        notes.append(f"clean predictions differ between the suites on {differ} sample(s); a sample counts as robust "
                     "only if it is correct in every suite")
    robust = clean & np.logical_and.reduce([f["robust"].astype(bool) for f in parts])
    out = {"labels": labels, "clean_pred": parts[0]["clean_pred"], "clean_correct": parts[0]["clean_correct"].astype(bool),
           "robust": robust}
    for f in parts:
        for k, v in f.items():
            if k.startswith("robust__"):
                out[k] = out[k] & v.astype(bool) if k in out else v.astype(bool)
    nonfinite = [f["nonfinite"].astype(bool) for f in parts if "nonfinite" in f]
    if nonfinite:  # a sample non-finite under any suite (older flags files have no such array)
        out["nonfinite"] = np.logical_or.reduce(nonfinite)
    return out, notes


class FlagsCache:
    """Per-sample flags read once per sidecar file (keyed by path and sha256)."""

    def __init__(self) -> None:
        self._flags: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def get(self, loaded: LoadedEntry, m: DatasetMeasurement) -> dict[str, np.ndarray]:
        key = (str(loaded.base / m.sidecar.path), m.sidecar.sha256)
        if key not in self._flags:
            self._flags[key] = read_flags_ref(loaded, m)
        return self._flags[key]


SUITE_ORDER = ("pgd", "cw", "pgd+cw", "aa-lite", "autoattack", "aa-fare")


def suite_order(suite: str) -> tuple[int, str]:
    return (SUITE_ORDER.index(suite) if suite in SUITE_ORDER else len(SUITE_ORDER), suite)


def combine_dataset(parts: Sequence[LoadedEntry], suites: Sequence[str], ds: str, model_id: str,
                    cache: FlagsCache | None = None) -> tuple[DatasetMeasurement, dict[str, np.ndarray]]:
    """The worst case of ``parts`` (one entry per suite, each measuring ``ds``) on dataset ``ds``, from flags."""
    cache = cache or FlagsCache()
    ms = [p.entry.measured.datasets[ds] for p in parts]  # type: ignore[union-attr]
    where = f"{', '.join(suites)} for {model_id} on {ds}"
    digests = {m.indices_digest for m in ms}
    if len(digests) > 1:
        detail = "; ".join(f"{s}: n={m.n_samples}, {m.indices_digest[:19]}…" for s, m in zip(suites, ms))
        raise SampleMismatch(f"Cannot combine {where}: the sample sets differ ({detail}). The worst case needs both "
                       "suites on the same samples: re-run them with the same --n-samples and --seed.")
    flags, notes = combine_flags([cache.get(p, m) for p, m in zip(parts, ms)], suites, where)
    if len(parts) == 1:
        return ms[0], flags
    attacks = sorted(k.removeprefix("robust__") for k in flags if k.startswith("robust__"))
    metrics = metrics_from_flags(flags, ms[0].metrics.num_classes, attacks)
    fl = Flags(fallbacks=sorted({x for m in ms for x in m.flags.fallbacks}),
               autoattack_warnings=sorted({x for m in ms for x in m.flags.autoattack_warnings}),
               notes=sorted({x for m in ms for x in m.flags.notes}) + notes)
    measurement = ms[0].model_copy(update={
        "metrics": metrics, "flags": fl,
        "deviations": list(dict.fromkeys(d for m in ms for d in m.deviations)),
        "measured_at": max(m.measured_at for m in ms)})
    return measurement, flags


def combined_entry(parts: Sequence[LoadedEntry], name: str, datasets: dict[str, DatasetMeasurement]) -> LoadedEntry:
    """An in-memory measured entry (suite ``name``) holding the combined ``datasets`` of ``parts``."""
    first = parts[0].entry
    assert first.measured is not None
    model_id, eps_text = first.model.id, first.eps_text
    combined = LeaderboardEntry(
        kind="measured", entry=measured_slug(model_id, name, eps_text or "", first.protocol.version,
                                             first.protocol.subset, first.protocol.variant), revision=1,
        created_at=max(p.entry.created_at for p in parts), protocol=first.protocol, model=first.model,
        suite=name, eps=first.eps, eps_text=eps_text, zsrbench_version=first.zsrbench_version,
        changes=[f"combined from {', '.join(f'{p.entry.entry}@r{p.entry.revision:04d}' for p in parts)}"],
        measured=MeasuredData(attacks=[a for p in parts for a in p.entry.measured.attacks],  # type: ignore[union-attr]
                              precision=first.measured.precision, seed=first.measured.seed, datasets=datasets))
    return LoadedEntry(combined, parts[0].base, None, None)


@dataclass
class Combined:
    """One model's worst case over several suites: the in-memory entry and the combined flags per dataset."""

    loaded: LoadedEntry
    flags: dict[str, dict[str, np.ndarray]]
    suites: list[str]  # every suite combined, in display order
    suites_by_dataset: dict[str, list[str]]  # the suites that measured each dataset
    notes: list[str] = field(default_factory=list)


def worst_over_all(parts: Sequence[LoadedEntry], cache: FlagsCache | None = None) -> Combined:
    """The per-sample worst case over every suite in ``parts`` (one model, one ε, one protocol version).

    Each dataset combines the suites that measured it; the notes say where a suite is missing. Raises
    :class:`ZsrError` when two suites measured a dataset on different samples.
    """
    cache = cache or FlagsCache()
    by_suite = sorted(parts, key=lambda p: suite_order(p.entry.suite))
    suites = [p.entry.suite for p in by_suite]
    order: list[str] = []
    for p in by_suite:
        order += [d for d in p.entry.protocol.datasets if d not in order]
        order += [d for d in p.entry.measured.datasets if d not in order]  # type: ignore[union-attr]
    datasets: dict[str, DatasetMeasurement] = {}
    flags: dict[str, dict[str, np.ndarray]] = {}
    by_ds: dict[str, list[str]] = {}
    notes = []
    model_id = by_suite[0].entry.model.id
    for ds in order:
        have = [p for p in by_suite if ds in p.entry.measured.datasets]  # type: ignore[union-attr]
        if not have:
            continue
        names = [p.entry.suite for p in have]
        datasets[ds], flags[ds] = combine_dataset(have, names, ds, model_id, cache)
        by_ds[ds] = names
        if len(names) < len(suites):
            notes.append(f"{ds}: worst case of {', '.join(names)} only ({', '.join(s for s in suites if s not in names)} "
                         "not measured there)")
    name = suites[0] if len(suites) == 1 else combined_suite_name(suites)
    loaded = by_suite[0] if len(suites) == 1 else combined_entry(by_suite, name, datasets)
    return Combined(loaded, flags, suites, by_ds, notes)


def worst_of(entries: Sequence[LoadedEntry], suites: Sequence[str],
             cache: FlagsCache | None = None) -> tuple[list[LoadedEntry], list[str]]:
    """One combined (in-memory) entry per model × ε × protocol version having every suite; plus warnings."""
    cache = cache or FlagsCache()
    warnings: list[str] = []
    by_key: dict[tuple[str, int, str, str | None], dict[str, LoadedEntry]] = {}
    reported = 0
    for le in entries:
        e = le.entry
        if e.kind != "measured":
            reported += e.kind == "reported" and e.suite in suites
            continue
        if e.suite in suites:
            by_key.setdefault((e.protocol.name, e.protocol.version, e.model.id, e.eps_text), {})[e.suite] = le
    if reported:
        warnings.append(f"{reported} reported entr{'y has' if reported == 1 else 'ies have'} no per-sample flags and "
                        "cannot be combined; not shown")
    name = combined_suite_name(suites)
    out = []
    for (proto, version, model_id, eps_text), have in sorted(by_key.items(), key=lambda kv: tuple(map(str, kv[0]))):
        missing = [s for s in suites if s not in have]
        if missing:
            warnings.append(f"{model_id} ({proto} v{version}, ε={eps_text}) has no entry for {', '.join(missing)}; "
                            "left out of the worst-of table")
            continue
        parts = [have[s] for s in suites]
        first = parts[0].entry
        assert first.measured is not None
        common = [d for d in first.measured.datasets if all(d in p.entry.measured.datasets for p in parts)]  # type: ignore[union-attr]
        skipped = sorted({d for p in parts for d in p.entry.measured.datasets} - set(common))  # type: ignore[union-attr]
        if skipped:
            warnings.append(f"{model_id}: {', '.join(skipped)} not measured under every suite; left out")
        datasets = {ds: combine_dataset(parts, suites, ds, model_id, cache)[0] for ds in common}
        if len(parts) == 1:  # pragma: no cover - parse_suites asks for two or more
            out.append(parts[0])
            continue
        out.append(combined_entry(parts, name, datasets))
    return out, warnings
