"""The site's index and its leaderboard pages, one per (protocol version, ε, subset).

A leaderboard page starts with the ranking (the per-sample worst case over every suite measured for a model,
its interval and significance group, the ranking rules of :mod:`zsrbench.leaderboard.ranking`), unranked and
unreliable models below the ranked ones with the reason, and the published (reported) numbers of the same
protocol and ε below those, each marked and linked to its source. A filter box and a "reported rows" toggle act
on every table of the page; each suite's own table follows, folded.
"""

from __future__ import annotations

from typing import Sequence

from zsrbench.errors import ZsrError
from zsrbench.leaderboard import tables
from zsrbench.site import leaderboard_table as lt
from zsrbench.site import naming
from zsrbench.site.data import PageGroups, SiteData
from zsrbench.site.html import bullet_list, esc, link, page

CONTROLS = (
    '<div class="controls">'
    '<label>Filter <input type="search" id="filter" placeholder="model or defense name" autocomplete="off"></label> '
    '<label><input type="checkbox" id="show-reported" checked> show reported (published) rows</label> '
    '<span id="row-count" class="muted"></span></div>'
)


def protocol_description(name: str) -> str | None:
    from zsrbench.registry import PROTOCOLS, load_builtins

    try:
        load_builtins()
        return getattr(PROTOCOLS.get(name), "description", None)
    except (ZsrError, ImportError):
        return None


def page_labels(pg: PageGroups, site: SiteData) -> dict[str, str]:
    ids = [le.entry.model.id for g in pg.groups for r in g.rows
           if r.kind == "measured" and (le := site.entry_of(g.protocol, r.entry)) is not None]
    return naming.labels_for(ids, site.facts)


def ordered_pages(site: SiteData) -> list[PageGroups]:
    """Pages with ranked models first, then with measured ones, then reported-only; newest version first."""
    def order(pg: PageGroups) -> tuple:
        name, version, eps_text, subset = pg.key
        ranked = pg.ranking is not None and any(r.rank is not None for r in pg.ranking.rows)
        eps = float(eps_text.split("/")[0]) if eps_text else -1.0
        return (not ranked, pg.ranking is None, name, -version, subset is not None, subset or "", eps)

    return sorted(site.pages.values(), key=order)


def _summary(pg: PageGroups, site: SiteData) -> dict:
    labels = page_labels(pg, site)
    rows = lt.main_rows(pg.ranking, pg.suites, site, labels)
    measured = [tr for tr in rows if tr.row.kind == "measured"]
    ranked = [tr for tr in measured if tr.ranked]
    return {"rows": rows, "measured": len(measured), "ranked": len(ranked),
            "reported": len(rows) - len(measured), "leader": ranked[0] if ranked else None}


def _other_pages(pg: PageGroups, site: SiteData) -> str:
    name = pg.key[0]
    others = [p for p in ordered_pages(site) if p.key[0] == name and p.key != pg.key]
    if not others:
        return ""
    items = "".join(f"<li>{link('../' + naming.protocol_page(p.key), naming.page_title(p.key))}</li>" for p in others)
    return f'<section><h2>Other pages of {esc(name)}</h2><ul>{items}</ul></section>'


def protocol_html(pg: PageGroups, site: SiteData) -> str:
    name, version, eps_text, subset = pg.key
    labels = page_labels(pg, site)
    rows = lt.main_rows(pg.ranking, pg.suites, site, labels)
    lead_group = pg.ranking or pg.suites[0]
    cols = lt.columns(lead_group, ranking=pg.ranking is not None, reported_only=pg.ranking is None)
    desc = protocol_description(name)
    parts = [f'<p class="lead">{esc(desc)}</p>' if desc else ""]
    if subset:
        parts.append(f'<p class="warnbox">These entries were measured on the <strong>{esc(subset)}</strong> subset of '
                     "the evaluation sets: wider intervals, never ranked. The full sets are on the protocol's "
                     "other pages.</p>")
    if pg.ranking is None:
        parts.append('<p class="warnbox">No measured entry yet: the rows below are published (reported) numbers, '
                     "shown as printed by their sources; none is ranked.</p>")
    ranked_by = "The first number column is what the models are ranked by. " if pg.ranking else ""
    parts.append(f"<p>Accuracy in %; ± is half the width of the 95% interval (hover a number for its bounds). "
                 f"{ranked_by}Click a column header to sort (again to reverse); {len(rows)} row(s).</p>")
    parts.append(CONTROLS)
    parts.append(lt.table_html(rows, cols, site, table_id="leaderboard",
                               caption="Ranking: worst case over every attack suite" if pg.ranking else
                               "Reported (published) numbers"))
    notes = lt.row_notes(rows)
    if lead_group.footer or notes:
        folded = (f"<details><summary>Notes on the rows ({len(notes)})</summary>{bullet_list(notes)}</details>"
                  if notes else "")
        parts.append(f"<section><h2>Notes</h2>{bullet_list(list(lead_group.footer))}{folded}</section>")
    for g in pg.suites:
        srows = lt.table_rows(g, site, labels)
        scols = lt.columns(g, ranking=False)
        sources = [f"[{i}] {s}" for i, s in enumerate(g.sources, 1)]
        parts.append(f'<details class="suite"><summary>Suite {esc(g.suite)}: {len(srows)} row(s), ordered by their '
                     f"own robust average</summary>"
                     + lt.table_html(srows, scols, site, table_id=f"suite-{g.suite}")
                     + bullet_list(list(g.footer) + sources) + "</details>")
    parts.append(_other_pages(pg, site))
    return page(naming.page_title(pg.key), "\n".join(p for p in parts if p), depth=1,
                site_title=site.title, crumbs=[(None, naming.page_title(pg.key))], script=True)


def index_html(site: SiteData) -> str:
    pages = ordered_pages(site)
    parts = ['<p class="lead">Zero-shot adversarial robustness of CLIP-like models: every number is measured by '
             "zsrbench from per-sample flags (95% intervals, paired significance tests) unless it is marked "
             "<em>reported</em> (a published number, shown with its source).</p>"]
    if not pages:
        parts.append('<p class="warnbox">The leaderboard has no entries yet: run <code>zsrbench run</code>, then '
                     "<code>zsrbench site</code> again.</p>")
    else:
        head = ("<tr><th class=\"l\">Protocol</th><th class=\"l\">Threat model</th><th>Measured models</th>"
                "<th>Ranked</th><th>Reported rows</th><th class=\"l\">Leader (robust average)</th></tr>")
        body = []
        for pg in pages:
            s = _summary(pg, site)
            leader = s["leader"]
            lead = "–" if leader is None else (
                f"{esc(leader.label)} {esc(leader.row.cells['robust'].get('avg', tables.Cell(None)).number())}")
            name, version, eps_text, subset = pg.key
            threat = (f"L∞, ε = {eps_text}" if eps_text else "clean") + (f" · {subset} subset" if subset else "")
            body.append(f"<tr><td class=\"l\">{esc(name)} v{version}</td><td class=\"l\">"
                        f"{link(naming.protocol_page(pg.key), threat)}</td><td>{s['measured']}</td>"
                        f"<td>{s['ranked']}</td><td>{s['reported']}</td><td class=\"l\">{lead}</td></tr>")
        parts.append(f'<section><h2>Protocols and threat models</h2><table class="overview">{head}'
                     f'{"".join(body)}</table></section>')
        first = pages[0]
        s = _summary(first, site)
        lead_group = first.ranking or first.suites[0]
        cols = lt.columns(lead_group, ranking=first.ranking is not None, compact=True,
                          reported_only=first.ranking is None)
        top = s["rows"][:10]
        parts.append(f"<section><h2>{esc(naming.page_title(first.key))}</h2>"
                     + _index_table(top, cols, site)
                     + f"<p>{link(naming.protocol_page(first.key), 'Full table: every dataset, intervals, suites')}"
                       "</p></section>")
    parts.append(_models_list(site))
    if site.warnings:
        parts.append(f"<section><h2>Warnings</h2>{bullet_list(site.warnings, 'warnings')}</section>")
    return page(site.title, "\n".join(parts), depth=0, site_title=site.title, script=True)


def _index_table(rows: Sequence[lt.TableRow], cols: Sequence[lt.Column], site: SiteData) -> str:
    return lt.table_html(rows, cols, site, table_id="top", root="")


def _models_list(site: SiteData) -> str:
    if not site.facts:
        return ""
    items = sorted(site.facts.values(), key=lambda f: site.labels[f.model_id].lower())
    lis = "".join(f"<li>{link(naming.model_page(f.model_id), site.labels[f.model_id])} "
                  f'<span class="muted">{esc(f.measured_under or "")}</span></li>' for f in items)
    return f'<section><h2>Model cards</h2><ul class="models">{lis}</ul></section>'
