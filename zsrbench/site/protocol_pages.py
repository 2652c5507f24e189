"""The site's index and its leaderboard pages, one per (protocol version, ε, subset).

A leaderboard page starts with the ranking (the per-sample worst case over every suite measured for a model,
its interval and significance group, the ranking rules of :mod:`zsrbench.leaderboard.ranking`), unranked and
unreliable models below the ranked ones with the reason, and the published (reported) numbers of the same
protocol and ε below those, each marked and linked to its source. A filter box and a "reported rows" toggle act
on every table of the page; each suite's own table follows, folded. Only ranked models carry a number; the audit
and status stand beside every model's name. A protocol that is a proxy (``Group.proxy``, e.g. micro: generated
data for development and CI) says so in its page's title and at its top, and the index announces no leader of it;
an experiment (a variant of the protocol's settings) has pages of its own and is ranked nowhere.
"""

from __future__ import annotations

from typing import Sequence

from zsrbench.errors import ZsrError
from zsrbench.leaderboard import table_model
from zsrbench.site import leaderboard_table as lt
from zsrbench.site import naming
from zsrbench.site.data import PageGroups, SiteData
from zsrbench.site.html import badge, bullet_list, esc, link, page

TOP_ROWS = 10  # rows of the leading table the index shows

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
    ids = [mid for g in pg.groups for r in g.rows if (mid := site.row_model(g, r))]
    return naming.labels_for(ids, site.facts)


def has_ranked(pg: PageGroups) -> bool:
    return pg.ranking is not None and any(lt.shown_rank(r) is not None for r in pg.ranking.rows)


def ordered_pages(site: SiteData) -> list[PageGroups]:
    """Evidence before proxies; pages with ranked models first, then with measured ones, then reported-only;
    newest version first; the standard evaluation before subsets and experiments."""
    def order(pg: PageGroups) -> tuple:
        name, version, eps_text, subset, variant = pg.key
        eps = float(eps_text.split("/")[0]) if eps_text else -1.0
        return (pg.proxy is not None, not has_ranked(pg), pg.ranking is None, name, -version, variant is not None,
                variant or "", subset is not None, subset or "", eps)

    return sorted(site.pages.values(), key=order)


def _summary(pg: PageGroups, site: SiteData) -> dict:
    labels = page_labels(pg, site)
    rows = lt.main_rows(pg.ranking, pg.suites, site, labels)
    measured = [tr for tr in rows if tr.row.kind == "measured"]
    ranked = [tr for tr in measured if tr.ranked]
    return {"rows": rows, "measured": len(measured), "ranked": len(ranked),
            "reported": len(rows) - len(measured), "leader": ranked[0] if ranked else None}


def proxy_box(name: str, proxy: str | None) -> str:
    """The warning at the top of a proxy protocol's tables (empty for other protocols)."""
    if not proxy:
        return ""
    return (f'<p class="warnbox proxy"><strong>{esc(name)} is {esc(proxy)}.</strong> Its rankings show that the '
            "benchmark works end to end; they are no evidence about the defenses.</p>")


def notes_box(notes: dict[str, str], datasets: Sequence[str]) -> str:
    """The dataset columns the tables mark, and why (``◊ dataset: note``)."""
    lines = [f"{lt.NOTE_MARK} {d}: {notes[d]}" for d in datasets if notes.get(d)]
    if not lines:
        return ""
    return f'<div class="dsnotes"><p>Columns marked {lt.NOTE_MARK} say little about the models:</p>' \
           f"{bullet_list(lines)}</div>"


def _other_pages(pg: PageGroups, site: SiteData) -> str:
    name = pg.key[0]
    others = [p for p in ordered_pages(site) if p.key[0] == name and p.key != pg.key]
    if not others:
        return ""
    items = "".join(f"<li>{link('../' + naming.protocol_page(p.key), p.title)}</li>" for p in others)
    return f'<section><h2>Other pages of {esc(name)}</h2><ul>{items}</ul></section>'


def protocol_html(pg: PageGroups, site: SiteData) -> str:
    name, version, eps_text, subset, variant = pg.key
    labels = page_labels(pg, site)
    rows = lt.main_rows(pg.ranking, pg.suites, site, labels)
    lead_group = pg.ranking or pg.suites[0]
    notes = pg.dataset_notes
    cols = lt.columns(lead_group, ranking=pg.ranking is not None, reported_only=pg.ranking is None, notes=notes)
    desc = protocol_description(name)
    parts = [proxy_box(name, pg.proxy), f'<p class="lead">{esc(desc)}</p>' if desc else ""]
    if subset:
        parts.append(f'<p class="warnbox">These entries were measured on the <strong>{esc(subset)}</strong> subset of '
                     "the evaluation sets: wider intervals, never ranked. The full sets are on the protocol's "
                     "other pages.</p>")
    if variant:
        parts.append(f'<p class="warnbox">An experiment: these entries were measured with settings other than the '
                     f"protocol's standard evaluation (variant <strong>{esc(variant)}</strong>), so no model is "
                     "ranked here. The standard evaluation is on the protocol's other pages.</p>")
    if pg.ranking is None and not any(r.kind == "measured" for g in pg.suites for r in g.rows):
        parts.append('<p class="warnbox">No measured entry yet: the rows below are published (reported) numbers, '
                     "shown as printed by their sources; none is ranked.</p>")
    ranked_by = "The first number column is what the models are ranked by. " if pg.ranking else ""
    parts.append(f"<p>Accuracy in %; ± is half the width of the 95% interval (hover a number for its bounds). "
                 f"{ranked_by}Click a column header to sort (again to reverse); {len(rows)} row(s).</p>")
    parts.append(CONTROLS)
    caption = ("Ranking: worst case over every attack suite" if pg.ranking else
               "Experiment: every row under its own attack suite, none ranked" if variant else
               "Reported (published) numbers")
    parts.append(lt.table_html(rows, cols, site, table_id="leaderboard",
                               caption=caption + (f" — {pg.proxy}" if pg.proxy else "")))
    parts.append(notes_box(notes, lead_group.datasets))
    row_notes = lt.row_notes(rows)
    if lead_group.footer or row_notes:
        folded = (f"<details><summary>Notes on the rows ({len(row_notes)})</summary>{bullet_list(row_notes)}"
                  "</details>" if row_notes else "")
        parts.append(f"<section><h2>Notes</h2>{bullet_list(list(lead_group.footer))}{folded}</section>")
    for g in pg.suites:
        srows = lt.table_rows(g, site, labels)
        scols = lt.columns(g, ranking=False, notes=notes)
        sources = [f"[{i}] {s}" for i, s in enumerate(g.sources, 1)]
        parts.append(f'<details class="suite"><summary>Suite {esc(g.suite)}: {len(srows)} row(s), ordered by their '
                     f"own robust average</summary>"
                     + lt.table_html(srows, scols, site, table_id=f"suite-{g.suite}")
                     + bullet_list(lt.note_lines(g, notes) + list(g.footer) + sources) + "</details>")
    parts.append(_other_pages(pg, site))
    return page(pg.title, "\n".join(p for p in parts if p), depth=1,
                site_title=site.title, crumbs=[(None, pg.title)], script=True)


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
        body = [_overview_row(pg, site) for pg in pages]
        parts.append(f'<section><h2>Protocols and threat models</h2><table class="overview" id="overview">'
                     f'<thead>{head}</thead><tbody>{"".join(body)}</tbody></table></section>')
        first = pages[0]
        s = _summary(first, site)
        lead_group = first.ranking or first.suites[0]
        cols = lt.columns(lead_group, ranking=first.ranking is not None, compact=True,
                          reported_only=first.ranking is None)
        top = s["rows"][:TOP_ROWS]
        parts.append(f"<section><h2>{esc(first.title)}</h2>" + proxy_box(first.key[0], first.proxy)
                     + _index_table(top, cols, site)
                     + f"<p>{link(naming.protocol_page(first.key), 'Full table: every dataset, intervals, suites')}"
                       "</p></section>")
    parts.append(_models_list(site))
    if site.warnings:
        parts.append(f"<section><h2>Warnings</h2>{bullet_list(site.warnings, 'warnings')}</section>")
    return page(site.title, "\n".join(parts), depth=0, site_title=site.title, script=True)


def leader_html(pg: PageGroups, leader: lt.TableRow | None) -> str:
    """The index's leader of a page: none for a proxy protocol (its ranking is no evidence), else the first
    ranked model and its robust average."""
    if pg.proxy:
        return f'{lt.DASH} <span class="muted">none announced: {esc(pg.key[0])} is {esc(pg.proxy)}</span>'
    if leader is None:
        return lt.DASH
    return f"{esc(leader.label)} {esc(leader.row.cells['robust'].get('avg', table_model.Cell(None)).number())}"


def _overview_row(pg: PageGroups, site: SiteData) -> str:
    """One line of the index's overview: protocol (and proxy badge), threat model, counts and leader."""
    s = _summary(pg, site)
    name, version, eps_text, subset, variant = pg.key
    threat = ((f"L∞, ε = {eps_text}" if eps_text else "clean") + (f" · {subset} subset" if subset else "")
              + (f" · experiment: variant {variant}" if variant else ""))
    proxy = " " + badge("proxy", "proxy", pg.proxy) if pg.proxy else ""
    return (f"<tr><td class=\"l\">{esc(name)} v{version}{proxy}</td><td class=\"l\">"
            f"{link(naming.protocol_page(pg.key), threat)}</td><td>{s['measured']}</td>"
            f"<td>{s['ranked']}</td><td>{s['reported']}</td><td class=\"l leader\">{leader_html(pg, s['leader'])}</td>"
            "</tr>")


def _index_table(rows: Sequence[lt.TableRow], cols: Sequence[lt.Column], site: SiteData) -> str:
    return lt.table_html(rows, cols, site, table_id="top", root="")


def _models_list(site: SiteData) -> str:
    if not site.facts:
        return ""
    items = sorted(site.facts.values(), key=lambda f: site.labels[f.model_id].lower())
    lis = "".join(f"<li>{link(naming.model_page(f.model_id), site.labels[f.model_id])} "
                  f'<span class="muted">{esc(f.measured_under or "")}</span></li>' for f in items)
    return f'<section><h2>Model cards</h2><ul class="models">{lis}</ul></section>'
