"""Ranking rules, significance groups and paired comparisons of leaderboard entries.

The ranking group of a (protocol version, ε, subset) has one row per measured model: its robust numbers are
the per-sample worst case over *every* attack suite measured for that model at that ε (a model with more
suites is held to all of them; models with different suite sets are fine). A model is **ranked** only when

(a) it has every suite its protocol requires (``Protocol.required_suites``; a protocol zsrbench does not know,
    e.g. a test fixture, requires none, so any suite is accepted),
(b) its audit entry (same protocol name, version, model id and ε) has a verdict for every dataset the model is
    ranked on, none of them ``fail`` (the model's audit verdict is the worst of those per-dataset verdicts, so a
    narrower re-audit cannot clear it), and the audit ran the same defense code (a plugin's version),
(c) if that audit found it randomised, at least one of its suites used EOT (an attack named ``aa-rand`` or
    with ``eot`` > 1),
(d) it was measured on the protocol's full evaluation sets, not a named subset, with the protocol's standard
    settings (not a variant).

Every other model is listed below the ranked ones, without a rank, with the reason. Ranked models carry a
significance group: a model shares the letter of the model ranked just above it unless the paired test of
their averages on the same samples (:func:`zsrbench.stats.paired_average`) gives p < 0.05.

:func:`compare_entries` is ``zsrbench compare A B``: per dataset and for the averages, the difference of two
measured entries on the same samples with its paired interval and p-value.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zsrbench import stats
from zsrbench.errors import ZsrError
from zsrbench.leaderboard import rows as R
from zsrbench.leaderboard import table_model as T
from zsrbench.leaderboard.combine import Combined, FlagsCache, SampleMismatch, suite_order, worst_over_all
from zsrbench.leaderboard.entries import code_key, rev_name
from zsrbench.leaderboard.reading import LoadedEntry, history
from zsrbench.leaderboard.schema import LeaderboardEntry, worst

AuditKey = tuple[str, int, str, "str | None"]  # protocol name, protocol version, model id, ε text
MASKING = "gradient masking"
FAILURE_MEANING = {"nonfinite": "non-finite outputs"}  # any other failed check reads as gradient masking
RANKED = "ranked"


# ---------------------------------------------------------------------------------------------------- rules
def audit_key(e: LeaderboardEntry) -> AuditKey:
    return (e.protocol.name, e.protocol.version, e.model.id, e.eps_text)


def audit_index(entries: Sequence[LoadedEntry]) -> dict[AuditKey, LeaderboardEntry]:
    """The audit entry of each (protocol, version, model, ε) among ``entries`` (the newest when there are several).

    An audit revision holds every dataset ever audited for the model (a narrower re-audit carries the others
    over), so the newest revision is the evidence per dataset.
    """
    newest: dict[AuditKey, LeaderboardEntry] = {}
    for le in entries:
        e = le.entry
        if e.kind != "audit" or e.audit is None:
            continue
        k = audit_key(e)
        if k not in newest or (e.created_at, e.revision) > (newest[k].created_at, newest[k].revision):
            newest[k] = e
    return newest


@dataclass
class AuditOn:
    """What an audit says about the datasets a model is ranked on."""

    verdict: str  # pass | warn | fail | n/a over the audited ones of those datasets; "none": no audit
    missing: list[str] = field(default_factory=list)  # ranked datasets the audit has no verdict for
    failed: list[str] = field(default_factory=list)  # checks failing on those datasets
    failed_on: list[str] = field(default_factory=list)  # datasets on which a check fails
    warned: list[str] = field(default_factory=list)
    code: str | None = None  # the defense code the audit ran (a plugin's "package version"; None: zsrbench's)
    randomised: bool = False


def audit_on(audit: LeaderboardEntry | None, datasets: Sequence[str]) -> AuditOn:
    """The audit's verdict on ``datasets``: the worst of its newest per-dataset verdicts there."""
    if audit is None or audit.audit is None:
        return AuditOn(T.AUDIT_NONE, missing=list(datasets))
    from zsrbench.leaderboard.audits import dataset_verdicts, failures_on

    dv = dataset_verdicts(audit.audit)
    have = [d for d in datasets if d in dv]
    failed, warned = failures_on(audit.audit.checks, have)
    return AuditOn(worst([dv[d] for d in have]) if have else T.AUDIT_NONE, missing=[d for d in datasets if d not in dv],
                   failed=failed, failed_on=[d for d in have if dv[d] == "fail"], warned=warned,
                   code=code_key(audit.model.origin), randomised=audit.audit.randomised)


def audit_status(audit: AuditOn | None) -> str:
    """pass | warn | fail | n/a, or ``none`` when the model has no audit."""
    return T.AUDIT_NONE if audit is None else audit.verdict


@functools.lru_cache(maxsize=None)
def required_suites(protocol: str) -> tuple[str, ...] | None:
    """The suites a ranked model of ``protocol`` must have; None when zsrbench does not know the protocol.

    None (e.g. the test fixtures' protocol "toy") means no suite is known to be required: every suite is
    accepted for ranking.
    """
    import zsrbench.protocols  # noqa: F401  (registers tga16, fare, synthetic without importing torch)
    from zsrbench.registry import PROTOCOLS, load_builtins

    if protocol not in PROTOCOLS:
        load_builtins()  # micro and the other built-ins
    try:
        proto = PROTOCOLS.get(protocol)
    except ZsrError:
        return None
    return tuple(getattr(proto, "required_suites", ()) or ())


def _eot(params: dict[str, Any]) -> float:
    try:
        return float(params.get("eot", 1) or 1)
    except (TypeError, ValueError):
        return 1.0


def uses_eot(le: LoadedEntry) -> bool:
    """The suite averaged gradients over the defense's randomness (``aa-rand``, or an attack with ``eot`` > 1)."""
    m = le.entry.measured
    return m is not None and any(a.name == "aa-rand" or _eot(a.params) > 1 for a in m.attacks)


def _per_dataset_text(ns: Sequence[int]) -> str:
    lo, hi = min(ns), max(ns)
    return f"{lo} per dataset" if lo == hi else f"{lo}–{hi} per dataset"


def rank_reasons(parts: Sequence[LoadedEntry], comb: Combined | None, audit: AuditOn, required: tuple[str, ...] | None,
                 subset: str | None, failure: str = "", variant: str | None = None) -> list[str]:
    """Why a model is not ranked (empty: it is ranked). Each reason starts with ``unreliable:`` or ``unranked:``.

    ``audit`` is the model's audit on the datasets it would be ranked on (:func:`audit_on`).
    """
    reasons = []
    if audit.verdict == "fail":
        meanings = list(dict.fromkeys(FAILURE_MEANING.get(f, MASKING) for f in audit.failed)) or [MASKING]
        where = f" on {', '.join(audit.failed_on)}" if audit.failed_on else ""
        failed = f" (audit failed{where}: {', '.join(audit.failed)})" if audit.failed else f" (audit failed{where})"
        reasons.append(f"unreliable: {' and '.join(meanings)}{failed}")
    if variant:
        reasons.append(f"unranked: experiment (variant {variant}), not the protocol's standard evaluation")
    if subset:
        ns = [m.n_samples for p in parts for m in p.entry.measured.datasets.values()]  # type: ignore[union-attr]
        reasons.append(f"unranked: {subset} subset ({_per_dataset_text(ns)})" if ns else f"unranked: {subset} subset")
    suites = [p.entry.suite for p in parts]
    if comb is None:
        reasons.append(f"unranked: {failure or 'its per-sample flags cannot be combined'}")
    if required:
        missing = [s for s in required if s not in suites]
        if missing:
            reasons.append(f"unranked: no {', '.join(missing)}")
        if comb is not None:
            for s in required:
                if s in suites:
                    gaps = [d for d, have in comb.suites_by_dataset.items() if s not in have]
                    if gaps:
                        reasons.append(f"unranked: {s} not measured on {', '.join(gaps)}")
    if audit.verdict == T.AUDIT_NONE:
        reasons.append("unranked: not audited")
    else:
        if audit.missing:
            reasons.append(f"unranked: not audited on {', '.join(audit.missing)}")
        codes = {code_key(p.entry.model.origin) for p in parts}
        if codes != {audit.code}:
            measured = ", ".join(sorted(c or "zsrbench" for c in codes))
            reasons.append(f"unranked: audited with {audit.code or 'zsrbench'}'s defense code, measured with "
                           f"{measured} (re-run zsrbench audit)")
        if audit.randomised and not any(uses_eot(p) for p in parts):
            reasons.append("unranked: randomised defense without EOT")
    return reasons


def format_reasons(reasons: Sequence[str]) -> str:
    """``unranked: a; unranked: b`` -> ``unranked: a; b``."""
    out, prev = [], None
    for r in reasons:
        prefix, _, rest = r.partition(": ")
        out.append(rest if prefix == prev else r)
        prev = prefix
    return "; ".join(out)


def group_letter(i: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa, …"""
    letters = string.ascii_lowercase
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = letters[r] + out
    return out


# ---------------------------------------------------------------------------------------------------- pairs
def same_samples(a: Combined | dict, b: Combined | dict, datasets: Sequence[str], a_le: LoadedEntry,
                 b_le: LoadedEntry) -> str | None:
    """None when ``a`` and ``b`` (flags per dataset) were measured on the same samples of every dataset, else why."""
    fa = a.flags if isinstance(a, Combined) else a
    fb = b.flags if isinstance(b, Combined) else b
    for d in datasets:
        ma = a_le.entry.measured.datasets[d]  # type: ignore[union-attr]
        mb = b_le.entry.measured.datasets[d]  # type: ignore[union-attr]
        la, lb = fa[d]["labels"], fb[d]["labels"]
        if ma.indices_digest != mb.indices_digest or la.shape != lb.shape or not np.array_equal(la, lb):
            return f"measured on different samples of {d}"
    return None


def _avg_datasets(g: T.Group, comb: Combined) -> list[str]:
    return [d for d in g.datasets if d in comb.flags]


def paired_rows(g: T.Group, above: Combined, below: Combined) -> tuple[stats.PairedDifference | None, str]:
    """The paired test of two ranking rows' robust averages; (None, why) when they cannot be paired."""
    da, db = _avg_datasets(g, above), _avg_datasets(g, below)
    if da != db or not da:
        return None, "averages over different datasets"
    why = same_samples(above, below, da, above.loaded, below.loaded)
    if why:
        return None, why
    chances = [above.loaded.entry.measured.datasets[d].metrics.chance for d in da] if g.normalised else None  # type: ignore[union-attr]
    res = stats.paired_average([above.flags[d]["robust"] for d in da], [below.flags[d]["robust"] for d in da], chances)
    return res, ""


def _vs_above(label: str, res: stats.PairedDifference | None, why: str) -> dict[str, Any]:
    if res is None:
        return {"model": label, "tested": False, "reason": why}
    return {"model": label, "tested": True, "difference": 100 * res.difference, "lo": 100 * res.lo,
            "hi": 100 * res.hi, "p": res.p, "significant": res.significant, "test": res.test}


# ---------------------------------------------------------------------------------------------------- the group
def _empty_row(parts: Sequence[LoadedEntry], g: T.Group) -> T.Row:
    e = parts[0].entry
    cells = {m: {k: T.Cell(None) for k, _ in g.columns} for m in T.METRICS}
    return T.Row(label=e.model.name, kind="measured", source="", entry=e.entry, revision=None, cells=cells,
                 model_id=e.model.id)


def ranking_group(key: T.GroupKey, members: Sequence[LoadedEntry], audits: dict[AuditKey, LeaderboardEntry],
                  warnings: list[str], cache: FlagsCache) -> T.Group:
    """The ranking table of one (protocol, version, ε, subset): see the module docstring for the rules."""
    g, zs = R.new_group(key, members, warnings)
    notes = R.new_notes()
    required = required_suites(g.protocol)
    by_model: dict[str, dict[str, LoadedEntry]] = {}
    for le in members:
        if le.entry.kind == "measured":
            by_model.setdefault(le.entry.model.id, {})[le.entry.suite] = le
    # Reported (published) rows are left out of the ranking table on purpose: a paper's number comes from one
    # attack (not the worst case over suites), has no per-sample flags (no interval, no paired test) and no
    # audit, so it cannot meet the ranking rules, and interleaving it would rank it by a weaker evaluation.
    # It stays in the per-suite tables next to the measured numbers of the same attack.
    has_reported = any(le.entry.kind == "reported" for le in members)
    combined: dict[int, Combined] = {}
    for model_id, have in by_model.items():
        parts = sorted(have.values(), key=lambda p: suite_order(p.entry.suite))
        failure = ""
        try:
            comb: Combined | None = worst_over_all(parts, cache)
        except ZsrError as exc:  # named in a warning; the per-suite tables still show the suites' own numbers
            warnings.append(f"{g.title}: {exc}")
            failure = ("its suites were measured on different samples" if isinstance(exc, SampleMismatch)
                       else "per-sample flags unreadable (see the warning)")
            comb = None
        if comb is None:
            row = _empty_row(parts, g)
        else:
            row = R.measured_row(comb.loaded, g, zs, notes)
            for n in comb.notes:
                row.add_note(T.METRICS, n)
        row.suites = [p.entry.suite for p in parts]
        row.source = "worst of " + ", ".join(row.suites) if len(row.suites) > 1 else row.suites[0]
        row.entries = [f"{p.entry.entry}@{rev_name(p.entry.revision)}" for p in parts]
        row.revision = None
        audit = audit_on(audits.get((g.protocol, g.version, model_id, g.eps_text)), _ranked_on(parts, comb))
        row.audit = audit_status(audit)
        if audit.verdict == "warn" and audit.warned:
            row.add_note(T.METRICS, f"audit warned: {', '.join(audit.warned)}")
        reasons = rank_reasons(parts, comb, audit, required, g.subset, failure, g.variant)
        row.status = format_reasons(reasons) if reasons else RANKED
        row.rank = None if reasons else 0
        if comb is not None:
            combined[id(row)] = comb
        g.rows.append(row)
    order = sorted(g.rows, key=lambda r: (-T.rank_value(r), r.label))
    ranked = [r for r in order if r.ranked]
    g.rows = ranked + [r for r in order if not r.ranked]
    untested = []
    letter = 0
    for i, r in enumerate(ranked):
        r.rank = i + 1
        if i:
            above = ranked[i - 1]
            res, why = paired_rows(g, combined[id(above)], combined[id(r)])
            r.vs_above = _vs_above(above.label, res, why)
            if res is None:
                untested.append(f"{r.label} vs {above.label}: {why}")
            elif res.significant:
                letter += 1
        r.group = group_letter(letter)
    _footer(g, required, untested, has_reported)
    R.finish_footnotes(g, notes)
    return g


def _ranked_on(parts: Sequence[LoadedEntry], comb: Combined | None) -> list[str]:
    """The datasets a model's row stands on: those of its combined flags, else of its entries."""
    if comb is not None:
        return list(comb.flags)
    return list(dict.fromkeys(d for p in parts for d in p.entry.measured.datasets))  # type: ignore[union-attr]


def _footer(g: T.Group, required: tuple[str, ...] | None, untested: list[str], has_reported: bool) -> None:
    if required is None:
        req = f"any suite (protocol {g.protocol} names no required suites)"
    elif required:
        req = f"every suite {g.protocol} requires ({', '.join(required)})"
    else:
        req = "any suite"
    g.footer.append(
        "Ranking: robust numbers are the per-sample worst case over every attack suite measured for the model at this "
        "ε (a sample counts only if it survives them all). A model is ranked when it was evaluated with " + req +
        " in the protocol's standard evaluation (its default settings, full evaluation sets), every dataset it is "
        "ranked on has an audit of the same defense code and none of those failed (the model's audit verdict is the "
        "worst over them), and it used EOT if the audit found it randomised; the others follow without a rank (–), "
        "with the reason.")
    if any(r.ranked for r in g.rows):
        g.footer.append(
            "Group: a ranked model keeps the letter of the model ranked just above it unless their averages differ "
            f"significantly (p < {stats.ALPHA:g}: {stats.TEST_DESCRIPTION}); a new letter marks a significant "
            "difference from the row above (letters compare neighbours only).")
    if untested:
        g.footer.append("Not tested against the model above, so no significance is claimed (same letter kept):")
        g.footer += [f"  - {u}" for u in untested]
    if has_reported:
        g.footer.append("Reported (published) numbers are not ranked: each comes from a single attack, without "
                        "per-sample flags or an audit; they are in the per-suite tables.")


# ---------------------------------------------------------------------------------------------------- compare
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
    from zsrbench.leaderboard.reading import resolve_entry

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
    assert ea.measured is not None and eb.measured is not None
    order = list(ea.protocol.datasets) + [d for d in ea.measured.datasets if d not in ea.protocol.datasets]
    common = [d for d in order if d in ea.measured.datasets and d in eb.measured.datasets]
    if not common:
        raise ZsrError(f"A ({ea.entry}) and B ({eb.entry}) have no dataset in common (A: "
                       f"{', '.join(ea.measured.datasets) or 'none'}; B: {', '.join(eb.measured.datasets) or 'none'}). "
                       "Measure both models on the same datasets.")
    cache = cache or FlagsCache()
    key = "robust" if metric == "robust" else "clean_correct"
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
    out = Comparison(a, b, metric, common)
    for d, x, y in zip(common, fa, fb):
        out.lines.append(ComparisonLine(d, d, int(x.size), stats.paired_dataset(x, y)))
    train = ea.protocol.train_dataset
    scopes = [("avg", "average", common)]
    zs = [d for d in common if d != train]
    if train in common and zs:
        scopes.append(("avg_zs", "zero-shot average", zs))
    if len(common) > 1 or ea.protocol.normalised_average:
        for k, label, ds in scopes:
            idx = [common.index(d) for d in ds]
            n = sum(fa[i].size for i in idx)
            if len(ds) > 1:
                out.lines.append(ComparisonLine(k, f"{label} ({len(ds)} datasets)", n,
                                                stats.paired_average([fa[i] for i in idx], [fb[i] for i in idx])))
            if ea.protocol.normalised_average:
                out.lines.append(ComparisonLine(f"{k}_norm", f"{label} (norm., {len(ds)} datasets)", n,
                                                stats.paired_average([fa[i] for i in idx], [fb[i] for i in idx],
                                                                     [chances[i] for i in idx])))
    for which, e, other in (("A", ea, eb), ("B", eb, ea)):
        only = [d for d in e.measured.datasets if d not in other.measured.datasets]  # type: ignore[union-attr]
        if only:
            out.notes.append(f"only {which} has {', '.join(only)}: left out")
    if ea.eps_text != eb.eps_text:
        out.notes.append(f"A is at ε = {ea.eps_text} and B at ε = {eb.eps_text}")
    return out
