"""Model cards: one page per measured model (one model id, i.e. one set of tensors).

A card says what the model is and where it comes from, from what its entries and result records carry: the
defense and its paper (link, venue, code), the architecture, how it was trained (the recorded
hyper-parameters, the training data when the record names it or the checkpoint is a published one zsrbench
knows), the checkpoint's source and digests, its audits (verdict, linked to the checks), its places on the
leaderboard pages and its entries. Fields a newer entry or record carries that this page does not know are
listed as they are, so nothing recorded is left out.
"""

from __future__ import annotations

from typing import Any

from zsrbench.leaderboard import ranking, table_model
from zsrbench.leaderboard.entries import rev_name
from zsrbench.leaderboard.schema import EntryModel, ModelInfo, ResultRecord
from zsrbench.site import leaderboard_table as lt
from zsrbench.site import naming
from zsrbench.site.data import PageGroups, SiteData, entry_page_key
from zsrbench.site.html import code, esc, kv_table, link, page, value_html, verdict_badge
from zsrbench.site.papers import defense_citation, defense_display, paper, safe_url
from zsrbench.site.protocol_pages import ordered_pages, proxy_box

KNOWN_ENTRY_FIELDS = {"id", "name", "defense", "architecture", "checkpoint_sha256", "tensors_sha256", "description"}
KNOWN_RECORD_FIELDS = {"id", "defense", "architecture", "pretrained", "checkpoint", "checkpoint_sha256",
                       "weights_sha256", "tensors_sha256", "text_tower_sha256", "image_size", "hparams", "notes"}
ON_DEMAND_PREFIX = "cache:defenses/"  # checkpoints zsrbench fine-tuned itself under a protocol's recipe


def _catalogue(checkpoint: str | None) -> Any:
    if not checkpoint:
        return None
    try:
        from zsrbench.models import catalogue
    except ImportError:  # pragma: no cover
        return None
    for name in (checkpoint, checkpoint.rstrip("/").rsplit("/", 1)[-1]):
        hit = catalogue.lookup(name)
        if hit is not None:
            return hit
    return None


def defense_section(defense: str | None) -> str:
    p = paper(defense)
    rows = [("defense", esc(f"{defense_display(defense)}") + (" " + code(defense) if defense else ""))]
    cite = defense_citation(defense)
    if cite:
        rows.append(("paper", esc(cite)))
    if p is not None:
        rows += [("venue", esc(p.venue)), ("paper link", link(safe_url(p.url), p.url, external=True))]
        if p.code:
            rows.append(("code", link(safe_url(p.code), p.code, external=True)))
    elif not cite:
        rows.append(("paper", esc("not known to this installation of zsrbench (a plugin defense?)")))
    return f"<section><h2>Defense</h2>{kv_table(rows)}</section>"


def training_rows(rec: ResultRecord | None, defense: str | None) -> list[tuple[str, str]]:
    """How the model was trained, as far as its newest record says."""
    if rec is None:
        return [("training", esc("no readable result record"))]
    m = rec.model
    rows: list[tuple[str, str]] = []
    cat = _catalogue(m.checkpoint)
    settings = rec.protocol.settings or {}
    if cat is not None:
        rows += [("published checkpoint", esc(cat.name) + " " + link(safe_url(cat.url), "(source)", external=True)),
                 ("training data", esc(cat.train_data)), ("fine-tuned from", esc(f"{cat.architecture} {cat.base}")),
                 ("training ε", esc("unknown" if cat.train_eps is None else f"{cat.train_eps:g}/255"))]
        if cat.notes:
            rows.append(("about", esc(cat.notes)))
    elif m.checkpoint and m.checkpoint.startswith(ON_DEMAND_PREFIX):
        train = settings.get("train_dataset")
        rows.append(("training data", esc(f"{train} (the source task of protocol {rec.protocol.name} "
                                          f"v{rec.protocol.version})" if train else "not recorded")))
        rows.append(("trained by", esc("zsrbench, on demand, with the protocol's shared recipe")))
        if settings.get("train_recipe"):
            rows.append(("protocol's recipe", value_html(settings["train_recipe"])))
    elif not m.checkpoint and not m.hparams:
        weights = f"the pretrained weights '{m.pretrained}'" if m.pretrained else "the weights the protocol loads"
        rows.append(("training", esc(f"no fine-tuning recorded: {weights}, as loaded")))
    else:
        rows.append(("training data", esc("not recorded by the entry (see the checkpoint's own documentation)")))
    if m.hparams:
        rows.append(("recorded hyper-parameters", value_html(m.hparams)))
    if m.notes:
        rows.append(("notes", value_html(list(m.notes))))
    return rows


def _extra(model: EntryModel | ModelInfo, known: set[str]) -> dict[str, Any]:
    data = model.model_dump(mode="json")
    return {k: v for k, v in data.items() if k not in known and v not in (None, [], {}, "")}


def card_html(model_id: str, site: SiteData) -> str:
    facts = site.facts[model_id]
    label = site.labels[model_id]
    members = sorted(site.model_entries(model_id), key=lambda le: le.entry.kind != "measured")
    e = members[0].entry
    rec = site.newest_record(model_id)
    m = rec.model if rec else None
    summary = [("model id", code(model_id)), ("defense", esc(defense_display(facts.defense))),
               ("architecture", esc(facts.architecture or "–")),
               ("input size", esc(f"{m.image_size} px" if m else "–")),
               ("measured under", esc(facts.measured_under or "–"))]
    parts = [proxy_notes(model_id, site), f"<section><h2>Model</h2>{kv_table(summary)}</section>",
             defense_section(facts.defense)]
    parts.append(f"<section><h2>Training</h2>{kv_table(training_rows(rec, facts.defense))}</section>")
    ck = [("source", esc(m.checkpoint or (f"pretrained {m.pretrained}" if m.pretrained else "none named")) if m
           else esc("–")),
          ("checkpoint sha256", code((m.checkpoint_sha256 if m else None) or e.model.checkpoint_sha256 or "–")),
          ("weights file sha256", code((m.weights_sha256 if m else None) or "–")),
          ("tensors sha256 (the model's identity)",
           code((m.tensors_sha256 if m else None) or e.model.tensors_sha256 or "–")),
          ("text tower sha256", code((m.text_tower_sha256 if m else None) or "–"))]
    parts.append(f"<section><h2>Checkpoint</h2>{kv_table(ck)}</section>")
    extra = _extra(e.model, KNOWN_ENTRY_FIELDS) | (_extra(m, KNOWN_RECORD_FIELDS) if m else {})
    if extra:
        parts.append(f"<section><h2>Identity and provenance, as recorded</h2>{value_html(extra)}</section>")
    parts.append(_audits(model_id, site))
    parts.append(_places(model_id, site))
    parts.append(_entries(model_id, site))
    return page(f"{label}", "\n".join(parts), depth=1, site_title=site.title, crumbs=[(None, label)])


def proxy_notes(model_id: str, site: SiteData) -> str:
    """The proxy warning of each protocol the model was measured under that is a proxy (``Group.proxy``)."""
    proxies: dict[str, str] = {}
    for le in site.model_entries(model_id):
        pg = site.pages.get(entry_page_key(le.entry))
        if pg is not None and pg.proxy:
            proxies.setdefault(pg.key[0], pg.proxy)
    return "".join(proxy_box(name, text) for name, text in proxies.items())


VERDICT_TITLE = ("the worst of the audit's per-dataset verdicts on the datasets the model was measured on: what its "
                 "ranking rests on")


def measured_datasets(model_id: str, name: str, version: int, eps: str | None, site: SiteData) -> list[str]:
    """The datasets the model was measured on under one protocol version and ε (what its ranking stands on)."""
    return list(dict.fromkeys(d for le in site.model_entries(model_id) if le.entry.kind == "measured"
                              and (le.entry.protocol.name, le.entry.protocol.version, le.entry.eps_text)
                              == (name, version, eps) and le.entry.measured is not None
                              for d in le.entry.measured.datasets))


def audit_text(on: ranking.AuditOn, recorded: str) -> str:
    """What the audit says on the datasets the model is measured on, as the ranking reads it (per dataset)."""
    parts = [f"failed on {', '.join(on.failed_on)}: {', '.join(on.failed)}" if on.failed else "",
             f"warned: {', '.join(on.warned)}" if on.warned else "",
             f"no verdict for {', '.join(on.missing)}" if on.missing else "",
             "randomised" if on.randomised else "",
             f"the audit's overall verdict as recorded: {recorded}" if recorded != on.verdict else ""]
    return "; ".join(x for x in parts if x) or "every check passed"


def _audits(model_id: str, site: SiteData) -> str:
    measured = sorted({(le.entry.protocol.name, le.entry.protocol.version, le.entry.eps_text)
                       for le in site.model_entries(model_id) if le.entry.kind == "measured"})
    rows = []
    for name, version, eps in measured:
        audit = site.audit_for(name, version, model_id, eps)
        if audit is None:
            rows.append(f"<tr><td class=\"l\">{esc(f'{name} v{version}')}</td><td class=\"l\">{esc(eps)}</td>"
                        f"<td class=\"l\">{verdict_badge('none')}</td><td class=\"l\">not audited: not ranked "
                        f"(<code>zsrbench audit</code>)</td></tr>")
            continue
        a = audit.entry.audit
        assert a is not None
        on = ranking.audit_on(audit.entry, measured_datasets(model_id, name, version, eps, site))
        target = "../" + naming.entry_page(name, audit.entry.entry) + "#checks"
        rows.append(f"<tr><td class=\"l\">{esc(f'{name} v{version}')}</td><td class=\"l\">{esc(eps)}</td>"
                    f"<td class=\"l\">{verdict_badge(on.verdict)}</td><td class=\"l\">"
                    f"{esc(audit_text(on, a.verdict))} · {link(target, f'{len(a.checks)} checks')} "
                    f"({esc(audit.entry.created_at)})</td></tr>")
    if not rows:
        return ""
    return ('<section><h2>Audit</h2><table class="data"><tr><th class="l">Protocol</th><th class="l">ε</th>'
            f'<th class="l" title="{esc(VERDICT_TITLE)}">Verdict</th><th class="l">Checks</th></tr>{"".join(rows)}'
            "</table></section>")


def table_name(g: table_model.Group) -> str:
    """How a model card names one table of a page: the ranking, or one suite's table."""
    return "ranking (worst case over suites)" if g.is_ranking else f"suite {g.suite}"


def place_row(pg: PageGroups, g: table_model.Group, r: table_model.Row) -> str:
    """One table the model is a row of: the page, the table, its rank there (– when not ranked), its robust
    average and its status (the reason when it is not ranked)."""
    rank = lt.shown_rank(r)
    avg = r.cells.get("robust", {}).get("avg")
    status = r.status or (ranking.RANKED if rank is not None else "unranked")
    number = avg.number() if avg is not None and avg.value is not None else lt.DASH
    return (f"<tr><td class=\"l\">{link('../' + naming.protocol_page(pg.key), pg.title)}</td>"
            f"<td class=\"l\">{esc(table_name(g))}</td><td class=\"num rank\">{lt.DASH if rank is None else rank}</td>"
            f"<td>{esc(number)} <small class=\"ci\">{esc(avg.pm() if avg else '')}</small></td>"
            f"<td class=\"l status\">{esc(status)}</td></tr>")


def place_rows(model_id: str, site: SiteData) -> list[str]:
    """A line per table of the site the model is a row of (rows are matched by ``Row.model_id``: a ranking
    row's numbers are combined in memory, under a name no entry has)."""
    return [place_row(pg, g, r) for pg in ordered_pages(site) for g in pg.groups for r in g.rows
            if site.row_model(g, r) == model_id]


PLACES_HEAD = ('<thead><tr><th class="l">Page</th><th class="l">Table</th><th>Rank</th><th>Robust average</th>'
               '<th class="l">Status</th></tr></thead>')


def _places(model_id: str, site: SiteData) -> str:
    rows = place_rows(model_id, site)
    if not rows:
        return ('<section id="on-the-leaderboard"><h2>On the leaderboard</h2><p class="muted">In no table of this '
                "site.</p></section>")
    return ('<section id="on-the-leaderboard"><h2>On the leaderboard</h2><p>Every table the model is a row of: its '
            f'rank there, or – and why it is not ranked.</p><table class="data places" id="places">{PLACES_HEAD}'
            f'<tbody>{"".join(rows)}</tbody></table></section>')


def _entries(model_id: str, site: SiteData) -> str:
    lis = []
    for le in sorted(site.model_entries(model_id), key=lambda x: (x.entry.protocol.name, -x.entry.protocol.version,
                                                                   x.entry.eps_text or "", x.entry.suite)):
        e = le.entry
        lis.append(f"<li>{link('../' + naming.entry_page(e.protocol.name, e.entry), e.entry)} "
                   f"<span class=\"muted\">{esc(e.kind)} · {esc(rev_name(e.revision))} · {esc(e.created_at)}"
                   "</span></li>")
    return f"<section><h2>Entries</h2><ul>{''.join(lis)}</ul></section>"


def all_cards(site: SiteData) -> dict[str, str]:
    return {naming.model_page(mid): card_html(mid, site) for mid in site.facts}
