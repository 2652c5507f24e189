"""The leaderboard table of the site, as HTML: one row per model (or per reported result), the ranking metric
first.

Columns: rank, significance group, model, then the numbers (the robust average the table is ranked by, with its
95% interval; the clean average; the robust zero-shot average when the protocol has one; the robust accuracy
per dataset), then the audit verdict, the status (ranked, or why not) and what the numbers come from. Each
number cell carries its exact value in ``data-v`` (percent), which the page's script sorts by, and its interval
bounds in its tooltip. Rows carry ``data-name`` (what the filter box matches) and the classes ``measured`` /
``reported``, ``ranked`` / ``unranked`` and ``unreliable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from zsrbench.leaderboard import tables
from zsrbench.leaderboard.entries import rev_name
from zsrbench.leaderboard.reading import LoadedEntry
from zsrbench.site import naming
from zsrbench.site.data import SiteData
from zsrbench.site.html import badge, esc, href, link, verdict_badge
from zsrbench.site.papers import defense_display, safe_url, source_url

DASH = "–"
RANKING_KEY = "robust-avg"  # data-key of the ranking metric's column


@dataclass(frozen=True)
class Column:
    key: str  # data-key of the header
    label: str
    sort: str  # "number" | "text"
    metric: bool = False  # a column of accuracies
    title: str | None = None
    first: str = ""  # the order of the first click: "asc" | "desc" (default: numbers high first, text a-z)


@dataclass
class TableRow:
    row: tables.Row
    group: tables.Group
    entry: LoadedEntry | None  # the entry the row's first number comes from
    label: str
    rank: int | None  # as shown: the ranking's rank (reported rows have none there) or the suite table's

    @property
    def ranked(self) -> bool:
        return self.rank is not None

    @property
    def model_id(self) -> str | None:
        return self.entry.entry.model.id if self.entry is not None and self.row.kind == "measured" else None


def avg_label(g: tables.Group, key: str) -> str:
    return dict(g.avg_columns).get(key, key)


def columns(g: tables.Group, *, ranking: bool, compact: bool = False, reported_only: bool = False) -> list[Column]:
    """The columns of a table of ``g``'s protocol: ranking (worst case over suites), one suite's table, or
    (``reported_only``) published numbers under each row's own attack."""
    what = "worst case over suites" if ranking else "as reported, each row's own attack" if reported_only \
        else f"suite {g.suite}"
    norm = " Normalised: (acc − chance) / (1 − chance)." if g.normalised else ""
    cols = [Column("rank", "#", "number", title="rank (– : not ranked, see Status)", first="asc")]
    if ranking:
        cols.append(Column("group", "Group", "text", title="significance group: a new letter marks a significant "
                                                            "difference from the ranked row above"))
    cols.append(Column("model", "Model", "text"))
    cols.append(Column(RANKING_KEY, f"Robust {avg_label(g, 'avg')} · {what}", "number", True,
                       f"the number this table is ranked by: robust accuracy ({what}) averaged over the protocol's "
                       f"datasets, ± half its 95% interval.{norm}"))
    cols.append(Column("clean-avg", f"Clean {avg_label(g, 'avg')}", "number", True))
    if compact:
        return cols + [Column("audit", "Audit", "text"), Column("status", "Status", "text")]
    if "avg_zs" in dict(g.avg_columns):
        cols.append(Column("robust-avg_zs", f"Robust {avg_label(g, 'avg_zs')}", "number", True,
                           "robust average over the zero-shot datasets (the training dataset left out)"))
    for d in g.datasets:
        cols.append(Column(f"robust-{d}", d + (" (train)" if d == g.train_dataset else ""), "number", True,
                           f"robust accuracy on {d}"))
    return cols + [Column("audit", "Audit", "text"), Column("status", "Status", "text"),
                   Column("source", "Evaluated with", "text")]


# ------------------------------------------------------------------------------------------------ cells
def value_cell(cell: tables.Cell | None, *, reported: bool = False, ranking: bool = False) -> str:
    cls = "num ranking" if ranking else "num"
    if cell is None or cell.value is None:
        return f'<td class="{cls}">{DASH}</td>'
    text = cell.number() + "".join(cell.marks)
    tip = f"95% interval {cell.bound('lo')}–{cell.bound('hi')}" if cell.has_interval else \
        ("as printed by the source: no interval (no per-sample flags)" if reported else "no interval")
    pm = f' <small class="ci">{esc(cell.pm())}</small>' if cell.has_interval else ""
    return f'<td class="{cls}" data-v="{100 * cell.value:.6f}" title="{esc(tip)}">{esc(text)}{pm}</td>'


def _parts(tr: TableRow, site: SiteData) -> list[LoadedEntry]:
    """The entries a row's numbers come from (``slug@rNNNN`` in ``row.entries``), or the row's own entry."""
    out = []
    for ref in tr.row.entries:
        slug = ref.rsplit("@", 1)[0]
        le = site.entry_of(tr.group.protocol, slug)
        if le is not None:
            out.append(le)
    return out or ([tr.entry] if tr.entry is not None else [])


def model_cell(tr: TableRow, root: str) -> str:
    r, le = tr.row, tr.entry
    if r.kind == "reported" and le is not None and le.entry.reported is not None:
        rep = le.entry.reported
        url = safe_url(source_url(rep.source_id, rep.source))
        src = link(url, "source", external=True, cls="src", title=rep.source) if url else \
            link(f"{root}{naming.entry_page(tr.group.protocol, r.entry)}#source", "source", cls="src", title=rep.source)
        page = link(f"{root}{naming.entry_page(tr.group.protocol, r.entry)}", tr.label, title=rep.source)
        attack = f'<small class="muted" title="{esc(rep.attack_description or rep.attack)}">{esc(rep.attack)}</small>'
        return f'<td class="model" data-v="{esc(tr.label.lower())}">{page} ' \
               f'{badge("reported", "reported", "published number, not measured by zsrbench")} {src} {attack}</td>'
    mid = tr.model_id
    if mid is None:
        return f'<td class="model">{esc(tr.label)}</td>'
    return f'<td class="model" data-v="{esc(tr.label.lower())}">' \
           f'{link(root + naming.model_page(mid), tr.label, title=f"model {mid}")}</td>'


def audit_cell(tr: TableRow, site: SiteData, root: str) -> str:
    r = tr.row
    if r.kind == "reported" or tr.model_id is None:
        return f'<td class="l" data-v="">{DASH}</td>'
    g = tr.group
    audit = site.audit_for(g.protocol, g.version, tr.model_id, g.eps_text)
    verdict = r.audit or "none"
    b = verdict_badge(verdict)
    if audit is not None:
        b = f'<a href="{href(root + naming.entry_page(g.protocol, audit.entry.entry) + "#checks")}">{b}</a>'
    return f'<td class="l" data-v="{esc(verdict)}">{b}</td>'


REPORTED_STATUS = ("published number under one attack, without per-sample flags (no interval, no paired test) or "
                   "an audit: never ranked")


def status_text(tr: TableRow) -> str:
    r = tr.row
    if r.kind == "reported":
        return "reported · not ranked"
    if tr.group.is_ranking:
        return r.status or ""
    return r.source  # a suite's table: "measured r0002"


def source_cell(tr: TableRow, site: SiteData, root: str) -> str:
    r = tr.row
    if r.kind == "reported":
        suite = tr.entry.entry.suite if tr.entry is not None else r.source
        return f'<td class="l">{link(root + naming.entry_page(tr.group.protocol, r.entry), f"{suite} (reported)")}</td>'
    links = [link(root + naming.entry_page(le.entry.protocol.name, le.entry.entry),
                  f"{le.entry.suite} {rev_name(le.entry.revision)}", title=le.entry.entry)
             for le in _parts(tr, site)]
    return f'<td class="l">{", ".join(links) or esc(r.source)}</td>'


def filter_text(tr: TableRow) -> str:
    e = tr.entry.entry if tr.entry is not None else None
    words = [tr.label, tr.row.label]
    if e is not None:
        words += [e.model.defense or "", defense_display(e.model.defense) if e.model.defense else "", e.model.id]
        if e.reported is not None:
            words += [e.reported.method, e.reported.source_id]
    return " ".join(w for w in dict.fromkeys(words) if w)


def row_html(tr: TableRow, cols: Sequence[Column], site: SiteData, root: str = "../") -> str:
    r = tr.row
    classes = [r.kind, "ranked" if tr.ranked else "unranked"]
    if (r.status or "").startswith("unreliable"):
        classes.append("unreliable")
    cells = []
    for c in cols:
        if c.key == "rank":
            cells.append(f'<td class="num" data-v="{tr.rank}">{tr.rank}</td>' if tr.ranked else
                         f'<td class="num">{DASH}</td>')
        elif c.key == "group":
            cells.append(f'<td class="l">{esc(r.group or DASH)}</td>')
        elif c.key == "model":
            cells.append(model_cell(tr, root))
        elif c.key == "audit":
            cells.append(audit_cell(tr, site, root))
        elif c.key == "status":
            tip = f' title="{esc(REPORTED_STATUS)}"' if r.kind == "reported" else ""
            cells.append(f'<td class="l status"{tip}>{esc(status_text(tr))}</td>')
        elif c.key == "source":
            cells.append(source_cell(tr, site, root))
        else:
            metric, _, col = c.key.partition("-")
            cells.append(value_cell(r.cells.get(metric, {}).get(col), reported=r.kind == "reported",
                                    ranking=c.key == RANKING_KEY))
    return f'<tr class="{esc(" ".join(classes))}" data-name="{esc(filter_text(tr).lower())}">{"".join(cells)}</tr>'


def table_html(rows: Sequence[TableRow], cols: Sequence[Column], site: SiteData, *, table_id: str,
               caption: str | None = None, root: str = "../") -> str:
    """The table; ``root`` is the way from the page to the site's root ("../" for pages in a folder)."""
    head = "".join(
        f'<th data-key="{esc(c.key)}" data-sort="{esc(c.sort)}" class="{"metric" if c.metric else "l"}'
        f'{" ranking" if c.key == RANKING_KEY else ""}" tabindex="0"'
        + (f' title="{esc(c.title)}"' if c.title else "") + (f' data-first="{esc(c.first)}"' if c.first else "")
        + f">{esc(c.label)}</th>"
        for c in cols)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    body = "\n".join(row_html(tr, cols, site, root) for tr in rows)
    return (f'<div class="scroll"><table class="lb sortable" id="{esc(table_id)}">{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>\n{body}\n</tbody></table></div>")


# ------------------------------------------------------------------------------------------------ rows
def table_rows(g: tables.Group, site: SiteData, labels: dict[str, str]) -> list[TableRow]:
    out = []
    for r in g.rows:
        # a ranking row's numbers may be combined in memory from several entries: name it by the first of them
        le = site.entry_of(g.protocol, r.entry) or next(
            (x for ref in r.entries if (x := site.entry_of(g.protocol, ref.rsplit("@", 1)[0])) is not None), None)
        mid = le.entry.model.id if le is not None and r.kind == "measured" else None
        out.append(TableRow(r, g, le, labels.get(mid, r.label) if mid else r.label, r.rank))
    return out


def main_rows(ranking: tables.Group | None, suites: Sequence[tables.Group], site: SiteData,
              labels: dict[str, str]) -> list[TableRow]:
    """The page's leaderboard: the ranking group's rows (ranked, then the others with their reason), then every
    reported row of the page's suites (each result once, best first)."""
    rows = table_rows(ranking, site, labels) if ranking is not None else []
    seen: set[str] = set()
    reported = []
    for g in suites:
        for tr in table_rows(g, site, labels):
            if tr.row.kind == "reported" and tr.row.entry not in seen:
                seen.add(tr.row.entry)
                tr.rank = None  # its place in its suite's table is no rank in the ranking
                reported.append(tr)
    reported.sort(key=lambda tr: (-tables.rank_value(tr.row), tr.label))
    return rows + reported


def row_notes(rows: Sequence[TableRow]) -> list[str]:
    """The rows' notes (marks, fallbacks, settings that differ), each text once with the labels of the rows
    it applies to."""
    who: dict[str, list[str]] = {}
    for tr in rows:
        for n in (n for m in tables.METRICS for n in tr.row.notes.get(m, [])):
            labels = who.setdefault(n, [])
            if tr.label not in labels:
                labels.append(tr.label)
    return [f"{', '.join(labels)}: {text}" for text, labels in who.items()]
