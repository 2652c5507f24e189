"""Ranking rules and the ranking table of leaderboard entries.

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

The paired tests and the letters are :mod:`zsrbench.leaderboard.significance`; ``zsrbench compare A B`` (the
difference of two measured entries on the same samples) is :mod:`zsrbench.leaderboard.compare`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Sequence

from zsrbench import stats
from zsrbench.errors import ZsrError
from zsrbench.leaderboard import rows as R
from zsrbench.leaderboard import table_model as T
from zsrbench.leaderboard.combine import Combined, FlagsCache, SampleMismatch, suite_order, worst_over_all
from zsrbench.leaderboard.entries import code_key, rev_name
from zsrbench.leaderboard.reading import LoadedEntry
from zsrbench.leaderboard.schema import LeaderboardEntry, worst
from zsrbench.leaderboard.significance import assign_groups


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
    if T.is_non_adaptive(variant):
        reasons.append("unranked: non-adaptive (as published): the bare model was attacked and the test-time "
                       "defense applied afterwards; only its adaptive evaluation (BPDA/EOT) is ranked")
    elif variant:
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
        comb, failure = _combine(g, parts, warnings, cache)
        audit = audits.get((g.protocol, g.version, model_id, g.eps_text))
        row = _model_row(g, zs, notes, parts, comb, failure, audit, required)
        if comb is not None:
            combined[id(row)] = comb
        g.rows.append(row)
    order = sorted(g.rows, key=lambda r: (-T.rank_value(r), r.label))
    ranked = [r for r in order if r.ranked]
    g.rows = ranked + [r for r in order if not r.ranked]
    untested = assign_groups(g, ranked, combined)
    _footer(g, required, untested, has_reported)
    R.finish_footnotes(g, notes)
    return g


def _combine(g: T.Group, parts: Sequence[LoadedEntry], warnings: list[str], cache: FlagsCache
             ) -> tuple[Combined | None, str]:
    """A model's per-sample worst case over its suites; (None, why) when their flags cannot be combined (named in a
    warning; the per-suite tables still show the suites' own numbers)."""
    try:
        return worst_over_all(parts, cache), ""
    except ZsrError as exc:
        warnings.append(f"{g.title}: {exc}")
        return None, ("its suites were measured on different samples" if isinstance(exc, SampleMismatch)
                      else "per-sample flags unreadable (see the warning)")


def _model_row(g: T.Group, zs: list[str], notes: dict[str, dict[str, list[str]]], parts: Sequence[LoadedEntry],
               comb: Combined | None, failure: str, audit_entry: LeaderboardEntry | None,
               required: tuple[str, ...] | None) -> T.Row:
    """A model's ranking row: its worst case over its suites (no numbers when they cannot be combined), its audit
    verdict and its status (``ranked``, or why not, by :func:`rank_reasons`)."""
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
    audit = audit_on(audit_entry, _ranked_on(parts, comb))
    row.audit = audit_status(audit)
    if audit.verdict == "warn" and audit.warned:
        row.add_note(T.METRICS, f"audit warned: {', '.join(audit.warned)}")
    reasons = rank_reasons(parts, comb, audit, required, g.subset, failure, g.variant)
    row.status = format_reasons(reasons) if reasons else RANKED
    row.rank = None if reasons else 0
    return row


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

