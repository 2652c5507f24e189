"""The leaderboard table of the site, as HTML: one row per model (or per reported result), the ranking metric
first.

Columns: rank, significance group, model, the audit verdict and the status (ranked, or why not: right beside the
model, so that no row reads as ranked in the part of the table a window shows), then the numbers (the robust
average the table is ranked by, with its 95% interval; the clean average; the robust zero-shot average when the
protocol has one; the robust accuracy per dataset, a dataset's column marked when the tables note that it says
little about the models) and what the numbers come from. Only a row the ranking rules rank has a number in the
rank column; every other row has a dash. Each number cell carries its exact value in ``data-v`` (percent), which
the page's script sorts by, and its interval bounds in its tooltip. Rows carry ``data-name`` (what the filter box
matches) and the classes ``measured`` / ``reported``, ``ranked`` / ``unranked`` and ``unreliable``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from zsrbench.leaderboard import table_model
from zsrbench.leaderboard.ranking import RANKED
from zsrbench.leaderboard.entries import rev_name
from zsrbench.leaderboard.reading import LoadedEntry
from zsrbench.site import naming
from zsrbench.site.data import SiteData
from zsrbench.site.html import badge, esc, href, link, verdict_badge
from zsrbench.site.papers import defense_display, safe_url, source_url

DASH = "–"
RANKING_KEY = "robust-avg"  # data-key of the ranking metric's column
NOTE_MARK = "◊"  # marks a dataset column the tables note (saturated, or every model at chance)
REPORTED_LABEL = "reported: published numbers, not ranked"  # a reported row's status when its row carries none


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
    row: table_model.Row
    group: table_model.Group
    entry: LoadedEntry | None  # the entry the row's first number comes from
    label: str
    rank: int | None  # as shown: the number of a ranked model in its table; None for every other row
    model_id: str | None = None  # measured rows: the model the numbers are of

    @property
    def ranked(self) -> bool:
        return self.rank is not None


def shown_rank(r: table_model.Row) -> int | None:
    """The rank a row shows: a number only for a measured row the ranking rules rank, never for another row."""
    if r.kind != "measured" or r.rank is None:
        return None
    return r.rank if (r.status or RANKED) == RANKED else None


def avg_label(g: table_model.Group, key: str) -> str:
    return dict(g.avg_columns).get(key, key)


def dataset_notes(g: table_model.Group) -> dict[str, str]:
    """Per dataset, why its column says little about the models (``Group.dataset_notes``; empty without)."""
    return dict(getattr(g, "dataset_notes", None) or {})


def dataset_title(g: table_model.Group, d: str, note: str | None) -> str:
    """A dataset's column title: ``(train)`` for the training dataset; when ``d`` is noted, the tables' own tag
    (``micro_background (saturated)``) and the mark ◊ of its footnote."""
    train = " (train)" if d == g.train_dataset else ""
    if not note:
        return d + train
    tagged = getattr(g, "dataset_label", None)
    return (tagged(d) if callable(tagged) and d in dataset_notes(g) else d) + train + NOTE_MARK


def dataset_column(g: table_model.Group, d: str, note: str | None) -> Column:
    """The robust accuracy on ``d``, its header marked (and its note in the tooltip) when the tables note ``d``."""
    title = f"robust accuracy on {d}" + (f" — {NOTE_MARK} {note}" if note else "")
    return Column(f"robust-{d}", dataset_title(g, d, note), "number", True, title)


def columns(g: table_model.Group, *, ranking: bool, compact: bool = False, reported_only: bool = False,
            notes: Mapping[str, str] | None = None) -> list[Column]:
    """The columns of a table of ``g``'s protocol: ranking (worst case over suites), one suite's table, or
    (``reported_only``: a page without a ranking) each row under its own attack. Audit and status come right after the
    model, before the numbers; ``notes`` (default: ``g``'s) mark the dataset columns they name."""
    what = "worst case over suites" if ranking else "each row's own attack" if reported_only else f"suite {g.suite}"
    norm = " Normalised: (acc − chance) / (1 − chance)." if g.normalised else ""
    cols = [Column("rank", "#", "number", title="rank (– : not ranked, see Status)", first="asc")]
    if ranking:
        cols.append(Column("group", "Group", "text", title="significance group: a new letter marks a significant "
                                                            "difference from the ranked row above"))
    cols += [Column("model", "Model", "text"),
             Column("audit", "Audit", "text", title="the audit's verdict on the datasets the model is ranked on"),
             Column("status", "Status", "text", title="ranked, or why not (the reason in full in the tooltip)")]
    cols.append(Column(RANKING_KEY, f"Robust {avg_label(g, 'avg')} · {what}", "number", True,
                       f"the number this table is ranked by: robust accuracy ({what}) averaged over the protocol's "
                       f"datasets, ± half its 95% interval.{norm}"))
    cols.append(Column("clean-avg", f"Clean {avg_label(g, 'avg')}", "number", True))
    if compact:
        return cols
    if "avg_zs" in dict(g.avg_columns):
        cols.append(Column("robust-avg_zs", f"Robust {avg_label(g, 'avg_zs')}", "number", True,
                           "robust average over the zero-shot datasets (the training dataset left out)"))
    marks = dataset_notes(g) if notes is None else dict(notes)
    cols += [dataset_column(g, d, marks.get(d)) for d in g.datasets]
    return cols + [Column("source", "Evaluated with", "text")]


def note_lines(g: table_model.Group, notes: Mapping[str, str] | None = None) -> list[str]:
    """The footnotes of the marked dataset columns: ``◊ dataset: why``."""
    marks = dataset_notes(g) if notes is None else dict(notes)
    return [f"{NOTE_MARK} {d}: {marks[d]}" for d in g.datasets if marks.get(d)]


# ------------------------------------------------------------------------------------------------ cells
def value_cell(cell: table_model.Cell | None, *, reported: bool = False, ranking: bool = False) -> str:
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
    """The row's status in full: ``ranked``, the reason it is not (``unreliable: …``, ``unranked: …``), or a
    reported row's label (the protocol its numbers were measured under, as the tables give it)."""
    r = tr.row
    if r.kind == "reported":
        return r.status or REPORTED_LABEL
    return r.status or (RANKED if tr.ranked else "unranked")


def status_head(text: str) -> str:
    """The first words of a status: up to its first parenthesis, semicolon or middle dot (``unreliable: gradient
    masking``, a reported row's ``self-reported [1]``)."""
    return re.split(r" \(|; | · ", text, maxsplit=1)[0]


def status_cell(tr: TableRow) -> str:
    """The status, its first words emphasised and the rest below them; the whole text also in the tooltip."""
    text = status_text(tr)
    head = status_head(text)
    rest = text[len(head):]  # as it is, so that the cell's text is the status in full
    tip = f"{text} — {REPORTED_STATUS}" if tr.row.kind == "reported" else text
    more = f'<small class="why">{esc(rest)}</small>' if rest else ""
    return (f'<td class="l status" data-v="{esc(text.lower())}" title="{esc(tip)}">'
            f'<span class="st">{esc(head)}</span>{more}</td>')


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
            cells.append(status_cell(tr))
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
def table_rows(g: table_model.Group, site: SiteData, labels: dict[str, str]) -> list[TableRow]:
    """The rows of ``g`` as shown: a number only for the models the ranking rules rank (:func:`shown_rank`)."""
    out = []
    for r in g.rows:
        # a ranking row's numbers may be combined in memory from several entries: name it by the first of them
        le = site.entry_of(g.protocol, r.entry) or next(
            (x for ref in r.entries if (x := site.entry_of(g.protocol, ref.rsplit("@", 1)[0])) is not None), None)
        mid = site.row_model(g, r)
        out.append(TableRow(r, g, le, labels.get(mid, r.label) if mid else r.label, shown_rank(r), mid))
    return out


def main_rows(ranking: table_model.Group | None, suites: Sequence[table_model.Group], site: SiteData,
              labels: dict[str, str]) -> list[TableRow]:
    """The page's leaderboard: the ranking group's rows (ranked, then the others with their reason), then every
    reported row of the page's suites (each result once, best first). A page without a ranking (published
    numbers only, or an experiment) lists every row of its suites, none numbered."""
    rows = table_rows(ranking, site, labels) if ranking is not None else []
    seen: set[str] = set()
    others = []
    for g in suites:
        for tr in table_rows(g, site, labels):
            if (ranking is None or tr.row.kind == "reported") and tr.row.entry not in seen:
                seen.add(tr.row.entry)
                tr.rank = None  # its place in its suite's table is no rank in the ranking
                others.append(tr)
    others.sort(key=lambda tr: (tr.row.kind != "measured", -table_model.rank_value(tr.row), tr.label))
    return rows + others


def row_notes(rows: Sequence[TableRow]) -> list[str]:
    """The rows' notes (marks, fallbacks, settings that differ), each text once with the labels of the rows
    it applies to."""
    who: dict[str, list[str]] = {}
    for tr in rows:
        for n in (n for m in table_model.METRICS for n in tr.row.notes.get(m, [])):
            labels = who.setdefault(n, [])
            if tr.label not in labels:
                labels.append(tr.label)
    return [f"{', '.join(labels)}: {text}" for text, labels in who.items()]
