"""``zsrbench compare A B``: two measured entries of one protocol version on the samples both measured, per dataset
and for the averages, as paired differences with their interval and p-value (:mod:`zsrbench.stats`); printed by
:mod:`zsrbench.leaderboard.render_compare`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zsrbench import stats
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.combine import FlagsCache
from zsrbench.leaderboard.entries import rev_name
from zsrbench.leaderboard.reading import LoadedEntry, history, resolve_entry
from zsrbench.leaderboard.schema import EntryProtocol, LeaderboardEntry


@dataclass
class ComparisonLine:
    key: str  # a dataset, or avg / avg_norm / avg_zs / avg_zs_norm
    label: str
    n: int  # samples (summed over the datasets of an average)
    result: stats.PairedDifference


@dataclass
class Comparison:
    a: LoadedEntry
    b: LoadedEntry
    metric: str
    datasets: list[str]
    lines: list[ComparisonLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def name(le: LoadedEntry) -> str:
        e = le.entry
        return f"{e.protocol.name}/{e.entry}@{rev_name(e.revision)}"


def load_named(root: str | Path, name: str) -> LoadedEntry:
    """The entry ``name`` resolves to (as ``zsrbench show`` resolves it), at the revision asked for or the newest."""
    edir, revision = resolve_entry(root, name)
    hist = history(edir)
    pick = [h for h in hist if revision is None or h[0] == revision]
    if not pick:
        raise ZsrError(f"{edir.name} has no revision {revision}; it has {', '.join(rev_name(n) for n, _, _ in hist)}. "
                       "Name one of those (e.g. ENTRY@r0001) or drop the @ part for the newest.")
    n, path, e = pick[-1]
    if isinstance(e, ZsrError):
        raise ZsrError(f"{e} (run `zsrbench validate {path}`)")
    return LoadedEntry(e, edir, path, hist[-1][0])


def _needs_flags(le: LoadedEntry, which: str) -> None:
    e = le.entry
    if e.kind == "measured":
        return
    what = "reported entry (published numbers)" if e.kind == "reported" else "audit entry"
    raise ZsrError(f"{which} ({e.entry}) is a {what}: it has no per-sample flags, so it cannot be compared sample by "
                   "sample. Name a measured entry instead (`zsrbench table` lists the models; their entries are "
                   "named <model>__<suite>__eps<k>__v<version>).")


def _common_datasets(ea: LeaderboardEntry, eb: LeaderboardEntry) -> list[str]:
    """The datasets both entries measured, in their protocol's order (an error when there is none)."""
    assert ea.measured is not None and eb.measured is not None
    order = list(ea.protocol.datasets) + [d for d in ea.measured.datasets if d not in ea.protocol.datasets]
    common = [d for d in order if d in ea.measured.datasets and d in eb.measured.datasets]
    if not common:
        raise ZsrError(f"A ({ea.entry}) and B ({eb.entry}) have no dataset in common (A: "
                       f"{', '.join(ea.measured.datasets) or 'none'}; B: {', '.join(eb.measured.datasets) or 'none'}). "
                       "Measure both models on the same datasets.")
    return common


def _paired_flags(a: LoadedEntry, b: LoadedEntry, common: list[str], key: str, cache: FlagsCache
                  ) -> tuple[list[np.ndarray], list[np.ndarray], list[float]]:
    """Per dataset of ``common``: the samples A and B get right (``key`` and clean), and the chance level; an error
    when the two were measured on different samples."""
    ea, eb = a.entry, b.entry
    assert ea.measured is not None and eb.measured is not None
    fa, fb, chances = [], [], []
    for d in common:
        ma, mb = ea.measured.datasets[d], eb.measured.datasets[d]
        flags_a, flags_b = cache.get(a, ma), cache.get(b, mb)
        la, lb = flags_a["labels"], flags_b["labels"]
        if ma.indices_digest != mb.indices_digest or la.shape != lb.shape or not np.array_equal(la, lb):
            raise ZsrError(
                f"A ({ea.entry}) and B ({eb.entry}) were measured on different samples of {d} (A: n={ma.n_samples}, "
                f"{ma.indices_digest[:19]}…; B: n={mb.n_samples}, {mb.indices_digest[:19]}…): a paired comparison "
                "needs the same samples. Re-run one of them with the other's --n-samples, --seed and --subset.")
        fa.append(np.asarray(flags_a[key], dtype=bool) & np.asarray(flags_a["clean_correct"], dtype=bool))
        fb.append(np.asarray(flags_b[key], dtype=bool) & np.asarray(flags_b["clean_correct"], dtype=bool))
        chances.append(ma.metrics.chance)
    return fa, fb, chances


def _average_lines(protocol: EntryProtocol, common: list[str], fa: list[np.ndarray], fb: list[np.ndarray],
                   chances: list[float]) -> list[ComparisonLine]:
    """The averages' lines: plain, normalised when the protocol uses it, and zero-shot when the protocol's training
    dataset is among ``common``."""
    lines = []
    train = protocol.train_dataset
    scopes = [("avg", "average", common)]
    zs = [d for d in common if d != train]
    if train in common and zs:
        scopes.append(("avg_zs", "zero-shot average", zs))
    if len(common) > 1 or protocol.normalised_average:
        for k, label, ds in scopes:
            idx = [common.index(d) for d in ds]
            n = sum(fa[i].size for i in idx)
            if len(ds) > 1:
                lines.append(ComparisonLine(k, f"{label} ({len(ds)} datasets)", n,
                                            stats.paired_average([fa[i] for i in idx], [fb[i] for i in idx])))
            if protocol.normalised_average:
                lines.append(ComparisonLine(f"{k}_norm", f"{label} (norm., {len(ds)} datasets)", n,
                                            stats.paired_average([fa[i] for i in idx], [fb[i] for i in idx],
                                                                 [chances[i] for i in idx])))
    return lines


def compare_entries(a: LoadedEntry, b: LoadedEntry, metric: str = "robust",
                    cache: FlagsCache | None = None) -> Comparison:
    """A vs B on the samples both measured: per dataset and for the averages (plain; normalised when the protocol
    uses it; and zero-shot when the protocol has a training dataset among them)."""
    if metric not in ("robust", "clean"):
        raise ZsrError(f"--metric takes robust or clean; got {metric!r}.")
    _needs_flags(a, "A")
    _needs_flags(b, "B")
    ea, eb = a.entry, b.entry
    if (ea.protocol.name, ea.protocol.version) != (eb.protocol.name, eb.protocol.version):
        raise ZsrError(f"A is {ea.protocol.name} v{ea.protocol.version} and B is {eb.protocol.name} "
                       f"v{eb.protocol.version}: numbers of different protocols or protocol versions are never compared. "
                       "Compare two entries of the same protocol version (`zsrbench table --protocol-version all` "
                       "shows which exist).")
    common = _common_datasets(ea, eb)
    cache = cache or FlagsCache()
    key = "robust" if metric == "robust" else "clean_correct"
    fa, fb, chances = _paired_flags(a, b, common, key, cache)
    out = Comparison(a, b, metric, common)
    for d, x, y in zip(common, fa, fb):
        out.lines.append(ComparisonLine(d, d, int(x.size), stats.paired_dataset(x, y)))
    out.lines += _average_lines(ea.protocol, common, fa, fb, chances)
    for which, e, other in (("A", ea, eb), ("B", eb, ea)):
        only = [d for d in e.measured.datasets if d not in other.measured.datasets]  # type: ignore[union-attr]
        if only:
            out.notes.append(f"only {which} has {', '.join(only)}: left out")
    if ea.eps_text != eb.eps_text:
        out.notes.append(f"A is at ε = {ea.eps_text} and B at ε = {eb.eps_text}")
    return out
