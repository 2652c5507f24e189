"""One page per leaderboard entry: its numbers per dataset, where they come from, and its revisions.

Measured entries: clean and robust accuracy per dataset with their 95% intervals (Wilson, as the tables compute
them) and the averages of the entry's row in its suite's table; the provenance the entry and its result
records carry (zsrbench version, git commit, dates, attacks and settings, environment, the sha256 of every
record and flags file); the revision history; the per-dataset figure (or why there is none). Reported entries: the
numbers as printed and their source. Audit entries: every check with its verdict and numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zsrbench.errors import ZsrError
from zsrbench.leaderboard import rows
from zsrbench.leaderboard.audits import dataset_verdicts
from zsrbench.leaderboard.entries import rev_name
from zsrbench.leaderboard.reading import LoadedEntry, history
from zsrbench.leaderboard.schema import ResultRecord
from zsrbench.site import naming
from zsrbench.site.data import SiteData, entry_page_key, key
from zsrbench.site.html import badge, bullet_list, code, esc, kv_table, link, page, value_html, verdict_badge
from zsrbench.site.leaderboard_table import DASH, shown_rank
from zsrbench.site.papers import safe_url, source_url
from zsrbench.site.protocol_pages import proxy_box


@dataclass(frozen=True)
class Figure:
    """The per-dataset figure of an entry: its file (relative to the site's root) or why there is none."""

    path: str | None
    note: str = ""


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _interval(lo: float | None, hi: float | None) -> str:
    return "–" if lo is None or hi is None else f"[{100 * lo:.2f}, {100 * hi:.2f}]"


def entry_title(le: LoadedEntry, site: SiteData) -> str:
    e = le.entry
    eps = f"ε = {e.eps_text}" if e.eps_text else "clean"
    if e.kind == "reported" and e.reported is not None:
        return f"{e.model.name} (reported) · {e.reported.attack} · {eps}"
    label = site.labels.get(e.model.id, e.model.name)
    return f"Audit of {label} · {eps}" if e.kind == "audit" else f"{label} · {e.suite} · {eps}"


def standing(le: LoadedEntry, site: SiteData) -> str | None:
    """Where the entry's row stands, as HTML: its rank in its suite's table (– when not ranked) and its status
    (the reason, when it is not ranked; a reported row's label); None for an entry without a row."""
    row = site.suite_rows.get(key(le))
    if row is None:
        return None
    rank = shown_rank(row)
    status = row.status or ("ranked" if rank is not None else "unranked")
    pk = entry_page_key(le.entry)
    where = link("../" + naming.protocol_page(pk), site.page_title(pk)) if pk in site.pages else ""
    number = f"#{rank} in the table of suite {le.entry.suite}" if rank is not None else f"{DASH} (no rank)"
    return f"{esc(number)} · {esc(status)}" + (f" · {where}" if where else "")


def _summary(le: LoadedEntry, site: SiteData) -> str:
    e = le.entry
    newest = f" of {le.newest_revision}" if le.newest_revision else ""
    rows = [("entry", code(f"{e.protocol.name}/{e.entry}")), ("kind", badge(e.kind, e.kind)),
            ("revision", esc(f"{rev_name(e.revision)}{newest}")), ("created", esc(e.created_at)),
            ("protocol", esc(f"{e.protocol.name} v{e.protocol.version}"
                             + (f", {e.protocol.subset} subset" if e.protocol.subset else "")
                             + f" ({len(e.protocol.datasets)} datasets"
                             + (f", trained on {e.protocol.train_dataset}" if e.protocol.train_dataset else "")
                             + (", normalised averages" if e.protocol.normalised_average else "") + ")")),
            ("attack suite", esc(e.suite)),
            ("threat model", esc(f"L∞, ε = {e.eps_text} ({e.eps:.6g})" if e.eps_text and e.eps else "clean"))]
    if e.kind != "reported":
        label = site.labels.get(e.model.id, e.model.name)
        rows.append(("model", link("../" + naming.model_page(e.model.id), label) + " " + code(e.model.id)))
    place = standing(le, site)
    if place is not None:
        rows.append(("on the leaderboard", place))
    rows += [("written by", esc(f"zsrbench {e.zsrbench_version}")), ("digest", code(e.digest))]
    if e.previous is not None:
        rows.append(("previous revision", code(f"{e.previous.file} sha256 {e.previous.sha256}")))
    if le.file is None:
        rows.append(("stored", esc("not in the leaderboard folder: built in memory from the published numbers "
                                   "shipped with zsrbench")))
    return kv_table(rows)


# ------------------------------------------------------------------------------------------------ measured
def _dataset_table(le: LoadedEntry, site: SiteData) -> str:
    e = le.entry
    assert e.measured is not None
    head = ("<tr><th class=\"l\">Dataset</th><th>n</th><th>Clean %</th><th>95% interval</th><th>Robust %</th>"
            "<th>95% interval</th><th class=\"l\">Robust per attack %</th><th>Clean (norm.)</th>"
            "<th>Robust (norm.)</th><th class=\"l\">Notes</th></tr>")
    body = []
    for ds, m in e.measured.datasets.items():
        mt = m.metrics
        per = ", ".join(f"{a} {_pct(v)}" for a, v in mt.per_attack.items())
        notes = [*m.flags.fallbacks, *m.flags.autoattack_warnings, *m.flags.notes,
                 *(f"differs from the protocol: {d}" for d in m.deviations)]
        if mt.n_nonfinite:
            notes.append(f"{mt.n_nonfinite} sample(s) with non-finite logits (counted wrong)")
        train = " (train)" if ds == e.protocol.train_dataset else ""
        body.append(
            f"<tr><td class=\"l\">{esc(ds + train)}</td><td>{mt.n}</td><td>{_pct(mt.clean_accuracy)}</td>"
            f"<td>{_interval(*rows.dataset_interval(m, 'clean'))}</td><td>{_pct(mt.robust_accuracy)}</td>"
            f"<td>{_interval(*rows.dataset_interval(m, 'robust'))}</td><td class=\"l\">{esc(per)}</td>"
            f"<td>{_pct(mt.clean_normalised)}</td><td>{_pct(mt.robust_normalised)}</td>"
            f"<td class=\"l\">{esc('; '.join(notes)) or '–'}</td></tr>")
    row = site.suite_rows.get(key(le))
    if row is not None:
        for k in ("avg", "avg_zs"):
            c, r = row.cells["clean"].get(k), row.cells["robust"].get(k)
            if c is None and r is None:
                continue
            name = "Average" if k == "avg" else "Zero-shot average"
            norm = " (norm.)" if e.protocol.normalised_average else ""
            body.append(
                f"<tr class=\"avg\"><td class=\"l\">{esc(name + norm)}</td><td></td>"
                f"<td>{esc(c.number() if c else '–')}</td><td>{_interval(c.lo, c.hi) if c else '–'}</td>"
                f"<td>{esc(r.number() if r else '–')}</td><td>{_interval(r.lo, r.hi) if r else '–'}</td>"
                f"<td></td><td></td><td></td><td class=\"l\">"
                f"{esc('bootstrap interval over samples' if (r and r.has_interval) else '')}</td></tr>")
    return f'<div class="scroll"><table class="data">{head}{"".join(body)}</table></div>'


def _provenance(le: LoadedEntry, site: SiteData) -> str:
    e = le.entry
    assert e.measured is not None
    ms = e.measured
    attacks = "".join(f"<li>{esc(a.name)} [{esc(a.family)}] {value_html(a.params)}</li>" for a in ms.attacks)
    parts = [kv_table([("attacks", f"<ul>{attacks}</ul>"), ("precision", esc(ms.precision)),
                       ("seed", esc(ms.seed))])]
    head = ("<tr><th class=\"l\">Dataset</th><th class=\"l\">Measured</th><th class=\"l\">zsrbench</th>"
            "<th class=\"l\">Git commit</th><th class=\"l\">Samples (digest of the indices)</th>"
            "<th class=\"l\">Record (sha256)</th><th class=\"l\">Per-sample flags (sha256)</th></tr>")
    body = "".join(
        f"<tr><td class=\"l\">{esc(ds)}</td><td class=\"l\">{esc(m.measured_at)}</td>"
        f"<td class=\"l\">{esc(m.zsrbench_version)}</td><td class=\"l\">{code(m.git_sha or '–')}</td>"
        f"<td class=\"l\">{m.n_samples} · {code(m.indices_digest)}</td>"
        f"<td class=\"l\">{code(m.record.path)}<br>{code(m.record.sha256)}</td>"
        f"<td class=\"l\">{code(m.sidecar.path)}<br>{code(m.sidecar.sha256)}</td></tr>"
        for ds, m in ms.datasets.items())
    parts.append(f'<div class="scroll"><table class="data prov">{head}{body}</table></div>')
    recs = site.records.get(key(le), {})
    good = [r for r in recs.values() if isinstance(r, ResultRecord)]
    for ds, r in recs.items():
        if isinstance(r, ZsrError):
            parts.append(f'<p class="warnbox">Record of {esc(ds)} unreadable: {esc(r)}</p>')
    if good:
        newest = max(good, key=lambda r: r.created_at)
        p = newest.protocol
        rows = [("environment", value_html(sorted({_env_text(r) for r in good}))),
                ("input", esc(f"{p.input_mode}, {p.input_size} px, logit scale {p.logit_scale:g}")),
                ("success criterion", esc(p.success_criterion)), ("evaluation batch", esc(p.batch_size or "–")),
                ("variant of the protocol", esc(p.variant or "none (the protocol's settings)")),
                ("timing (s, images/s)", value_html({r.protocol.dataset: r.timing for r in good}))]
        if any(r.protocol.skipped_files for r in good):
            rows.append(("images left out", value_html({r.protocol.dataset: r.protocol.skipped_files for r in good
                                                        if r.protocol.skipped_files})))
        parts.append(kv_table(rows))
        parts.append(f"<details><summary>The protocol's expanded settings (from the newest record, "
                     f"{esc(newest.protocol.dataset)})</summary>{value_html(p.settings)}</details>")
    return "\n".join(parts)


def _env_text(r: ResultRecord) -> str:
    v = r.env
    return (f"python {v.python}, torch {v.torch}, open_clip {v.open_clip}, pyautoattack {v.pyautoattack}; "
            f"{v.device}; {v.platform}" + ("; torch.compile" if v.compiled else ""))


# ------------------------------------------------------------------------------------------------ reported
def _reported(le: LoadedEntry) -> str:
    e = le.entry
    r = e.reported
    assert r is not None
    url = safe_url(source_url(r.source_id, r.source))
    rows = [("source", esc(r.source) + (" " + link(url, "(link)", external=True) if url else "")),
            ("source id", code(r.source_id)), ("method", esc(r.method)),
            ("attack as printed", esc(r.attack + (f" — {r.attack_description}" if r.attack_description else ""))),
            ("model, as the source describes it", esc(e.model.description or "–")),
            ("imported from", esc(r.imported_from or "–"))]
    if r.withdrawn:
        rows.append(("withdrawn", esc(r.withdrawn)))
    parts = [f'<section id="source"><h2>Source</h2>{kv_table(rows)}{bullet_list(r.notes)}</section>']
    datasets = list(e.protocol.datasets)
    for nums in (r.clean, r.robust):
        datasets += [d for d in (nums.per_dataset if nums else {}) if d not in datasets]
    head = "<tr><th class=\"l\">Dataset</th><th>Clean % (as printed)</th><th>Robust % (as printed)</th></tr>"
    body = []
    for d in datasets:
        c = r.clean.per_dataset.get(d) if r.clean else None
        rb = r.robust.per_dataset.get(d) if r.robust else None
        body.append(f"<tr><td class=\"l\">{esc(d)}</td><td>{'–' if c is None else f'{c:.2f}'}</td>"
                    f"<td>{'–' if rb is None else f'{rb:.2f}'}</td></tr>")
    for label, attr in (("printed average", "average"), ("mean of the printed values", "per_dataset_mean")):
        vals = [getattr(n, attr) if n else None for n in (r.clean, r.robust)]
        scope = [f" ({n.average_scope})" if n and attr == "average" and n.average is not None else ""
                 for n in (r.clean, r.robust)]
        body.append(f"<tr class=\"avg\"><td class=\"l\">{esc(label)}</td>"
                    + "".join(f"<td>{'–' if v is None else f'{v:.2f}'}{esc(s)}</td>" for v, s in zip(vals, scope))
                    + "</tr>")
    notes = [f"{m}: {n}" for m, nums in (("clean", r.clean), ("robust", r.robust)) if nums for n in nums.notes]
    parts.append(f"<section><h2>Numbers, as printed</h2><p>Published numbers have no per-sample flags: no "
                 f"interval, no paired test, never ranked.</p><table class=\"data\">{head}{''.join(body)}</table>"
                 f"{bullet_list(notes)}</section>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------ audit
def _audit(le: LoadedEntry) -> str:
    a = le.entry.audit
    assert a is not None
    per_dataset = dataset_verdicts(a)
    by_dataset = ", ".join(f"{d} {v}" for d, v in per_dataset.items())
    rows = [("verdict", verdict_badge(a.verdict)),
            ("verdict per dataset", esc(by_dataset or "none") + ' <span class="muted">(what a ranking on those '
             "datasets rests on: the worst of them)</span>"),
            ("randomised", "yes (evaluate with EOT)" if a.randomised else "no"),
            ("failed checks", esc(", ".join(a.failed) or "none")),
            ("warned checks", esc(", ".join(a.warned) or "none")),
            ("transfer attacks from", esc(a.base_model or "–"))]
    head = ("<tr><th class=\"l\">Check</th><th class=\"l\">Verdict</th><th class=\"l\">Summary</th>"
            "<th class=\"l\">Thresholds</th></tr>")
    body = "".join(f"<tr><td class=\"l\">{esc(c.title)} {code(c.name)}</td><td class=\"l\">{verdict_badge(c.verdict)}"
                   f"</td><td class=\"l\">{esc(c.summary)}</td><td class=\"l\">{value_html(c.thresholds)}</td></tr>"
                   for c in a.checks)
    details = "".join(
        f"<details><summary>{esc(c.title)}: per dataset</summary>{value_html(c.per_dataset)}"
        + (f"<p>Samples listed: {esc(', '.join(f'{d}: {len(v)}' for d, v in c.samples.items()))}</p>" if c.samples
           else "") + "</details>"
        for c in a.checks if c.per_dataset or c.samples)
    extra = kv_table([("settings", value_html(a.settings)), ("datasets", value_html(a.datasets)),
                      ("environment", value_html(a.env)), ("timing", value_html(a.timing))])
    return (f'<section id="checks"><h2>Checks</h2>{kv_table(rows)}<div class="scroll"><table class="data">{head}'
            f"{body}</table></div>{details}</section><section><h2>Settings</h2>{extra}</section>")


# ------------------------------------------------------------------------------------------------ history
def _history(le: LoadedEntry) -> str:
    if le.file is None:
        return "<p>No revisions on disk: this entry is built in memory.</p>"
    head = "<tr><th class=\"l\">Revision</th><th class=\"l\">Created</th><th class=\"l\">What changed</th></tr>"
    body = []
    for n, p, e in history(le.base):
        shown = " (shown)" if n == le.entry.revision else ""
        if isinstance(e, ZsrError):
            body.append(f"<tr><td class=\"l\">{esc(rev_name(n))}</td><td class=\"l\">?</td>"
                        f"<td class=\"l\">{badge('invalid', 'fail')} {esc(e)}</td></tr>")
        else:
            body.append(f"<tr><td class=\"l\">{esc(rev_name(n) + shown)}</td><td class=\"l\">{esc(e.created_at)}</td>"
                        f"<td class=\"l\">{bullet_list(e.changes) or '–'}</td></tr>")
    return f'<table class="data">{head}{"".join(body)}</table>'


def _figure(fig: Figure | None, title: str) -> str:
    if fig is None:
        return ""
    if fig.path is None:
        return f'<section><h2>Figure</h2><p class="muted">No figure: {esc(fig.note)}</p></section>'
    return (f'<section><h2>Figure</h2><figure><a href="../{esc(fig.path)}"><img src="../{esc(fig.path)}" '
            f'alt="{esc("Per-dataset clean and robust accuracy: " + title)}"></a>'
            f'<figcaption>Clean and robust accuracy per dataset ({link("../" + fig.path, "PNG")}).</figcaption>'
            "</figure></section>")


def entry_html(le: LoadedEntry, site: SiteData, fig: Figure | None = None) -> str:
    e = le.entry
    title = entry_title(le, site)
    parts = [_summary(le, site)]
    if e.kind == "measured":
        parts.append(f"<section><h2>Per dataset</h2><p>Accuracy in %; 95% intervals: Wilson per dataset, "
                     f"stratified bootstrap over samples for the averages.</p>{_dataset_table(le, site)}</section>")
        parts.append(_figure(fig, title))
        parts.append(f"<section><h2>Provenance</h2>{_provenance(le, site)}</section>")
    elif e.kind == "reported":
        parts.append(_reported(le))
    else:
        parts.append(_audit(le))
    parts.append(f"<section><h2>Revisions</h2>{_history(le)}</section>")
    crumbs: list[tuple[str | None, str]] = []
    pg = site.pages.get(entry_page_key(e))
    if pg is not None:
        parts.insert(0, proxy_box(e.protocol.name, pg.proxy))
        if e.kind != "audit":
            crumbs.append((naming.protocol_page(pg.key), pg.title))
    if e.kind != "reported" and e.model.id in site.facts:
        crumbs.append((naming.model_page(e.model.id), site.labels[e.model.id]))
    crumbs.append((None, e.entry))
    return page(title, "\n".join(p for p in parts if p), depth=1, site_title=site.title, crumbs=crumbs)


def all_entry_pages(site: SiteData, figures: dict[Any, Figure]) -> dict[str, str]:
    return {naming.entry_page(*k): entry_html(le, site, figures.get(k)) for k, le in site.entries.items()}
