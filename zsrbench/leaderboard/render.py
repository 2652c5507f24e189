"""Render :class:`~zsrbench.leaderboard.table_model.TableSet` as markdown, CSV, LaTeX, HTML, JSON or a rich table.

Values are accuracies in % with two decimals. Measured cells carry their 95% interval: ``±h`` (h = half the
interval's width, in points) in markdown, HTML and LaTeX; ``<column>_lo`` / ``<column>_hi`` in CSV; ``lo`` /
``hi`` in JSON. The terminal shows ``±h`` on the averages only, to stay readable. Marks (†, ‡, *, §) refer to
the footnotes under each table; ``[n]`` refers to the group's sources (reported numbers). Ranking tables add
the significance group; every table has the status (ranked, or why not: only a model the ranking rules rank has
a number, in any table; a reported row never has one, and its status is the protocol its source actually used
and, for a third party's row, its difference to the authors' own) and the audit verdict.

Honest labels, in every format: a proxy protocol's tables (micro, synthetic) say so directly under their title
(JSON ``proxy``, CSV column ``proxy``); a saturated or at-chance dataset is tagged in its column title and
explained under the table (JSON ``dataset_notes``, CSV column ``dataset_notes``).
"""

from __future__ import annotations

import html
import json
from typing import Any

from zsrbench.leaderboard.table_model import DAGGER, DDAGGER, SECTION, STAR, Cell, Footnote, Group, Row, TableSet

METRIC_TITLES = {"robust": "Robust accuracy (%)", "clean": "Clean accuracy (%)"}
DATASET_NOTES_TITLE = "Datasets whose robust column says little about the models (tagged in the column titles):"
DASH = "–"


def _cell_text(cell: Cell | None, interval: bool = True) -> str:
    if cell is None or cell.value is None:
        return DASH
    text = cell.number() + "".join(cell.marks)
    return f"{text} {cell.pm()}" if interval and cell.has_interval else text


def _rank_text(r: Row) -> str:
    return DASH if r.rank is None else str(r.rank)


def _audit_text(r: Row) -> str:
    return r.audit or DASH


def _column_labels(g: Group, metric: str) -> list[tuple[str, str]]:
    """The value columns' (key, title): in a robust table a dataset with a note is tagged (``micro_background
    (saturated)``; the notes are about robust accuracy)."""
    tagged = g.dataset_notes if metric == "robust" else {}
    return [(k, g.dataset_label(k) if k in tagged else label) for k, label in g.columns]


def _short_status(r: Row) -> str:
    """The status in a word or two: ``ranked``, ``unreliable``, ``self-reported``, ``third-party`` …"""
    if r.kind == "reported":
        return (r.reported_protocol or {}).get("relation") or "reported"
    return (r.status or "").split(":")[0]


def _head(g: Group) -> tuple[list[str], list[str]]:
    """Column titles before and after the value columns."""
    before = ["#", "Group", "Model", "Source", "Status"] if g.is_ranking else ["#", "Model", "Source", "Status"]
    return before, ["Audit"]


def _row_texts(g: Group, r: Row) -> tuple[list[str], list[str]]:
    """Texts of the columns before and after the value columns (matching :func:`_head`)."""
    if g.is_ranking:
        before = [_rank_text(r), r.group or DASH, r.label, r.source, r.status or ""]
    else:
        before = [_rank_text(r), r.label, r.source, r.status or ""]
    return before, [_audit_text(r)]


def _footnote_lines(g: Group, metrics: tuple[str, ...] | list[str]) -> list[str]:
    """Footnotes of the given metrics' tables (merged, in mark order), then the sources."""
    merged: dict[str, Footnote] = {}
    for m in metrics:
        for fn in g.footnotes.get(m, []):
            if fn.mark not in merged:
                merged[fn.mark] = Footnote(fn.mark, fn.title, list(fn.items))
            else:
                merged[fn.mark].items += [i for i in fn.items if i not in merged[fn.mark].items]
    order = [DAGGER, DDAGGER, STAR, SECTION]
    lines = []
    for fn in sorted(merged.values(), key=lambda f: order.index(f.mark) if f.mark in order else len(order)):
        lines.append(f"{fn.mark} {fn.title}:")
        lines += [f"  - {item}" for item in fn.items]
    if g.dataset_notes and "robust" in metrics:
        lines.append(DATASET_NOTES_TITLE)
        lines += [f"  - {line}" for line in g.dataset_note_lines()]
    lines += g.footer
    for i, s in enumerate(g.sources, 1):
        lines.append(f"[{i}] {s}")
    return lines


def _tables(ts: TableSet) -> list[tuple[Group, str]]:
    return [(g, m) for g in ts.groups for m in ts.metrics]


# ---------------------------------------------------------------------------------------------------- markdown
def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")


def to_markdown(ts: TableSet) -> str:
    out: list[str] = []
    if not ts.groups:
        return "_No leaderboard entries match._\n"
    for g in ts.groups:
        out.append(f"## {_md_escape(g.title)}")
        out.append("")
        if g.proxy_line:
            out += [f"**{_md_escape(g.proxy_line)}**", ""]
        for metric in ts.metrics:
            out.append(f"**{METRIC_TITLES[metric]}**")
            out.append("")
            before, after = _head(g)
            head = [*before, *[_md_escape(label) for _, label in _column_labels(g, metric)], *after]
            out.append("| " + " | ".join(head) + " |")
            align = ["---:", ":---:", ":---", ":---", ":---"] if g.is_ranking else ["---:", ":---", ":---", ":---"]
            out.append("|" + "|".join(align + ["---:"] * len(g.columns) + [":---"]) + "|")
            for r in g.rows:
                pre, post = _row_texts(g, r)
                vals = [_cell_text(r.cells[metric].get(k)) for k, _ in g.columns]
                out.append("| " + " | ".join(_md_escape(t) for t in [*pre, *vals, *post]) + " |")
            out.append("")
        notes = _footnote_lines(g, ts.metrics)
        if notes:
            for line in notes:
                if line.startswith("  - "):
                    out.append("  - " + _md_escape(line[4:]))
                else:
                    out.append("- " + _md_escape(line))
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------------- CSV
def to_csv(ts: TableSet) -> str:
    """One line per table row and metric: the row's columns, then ``<column>``, ``<column>_lo``, ``<column>_hi``
    for every dataset and average, then marks and notes; built as a pandas DataFrame
    (:func:`zsrbench.leaderboard.frame.wide_frame`, the tidy :func:`~zsrbench.leaderboard.frame.table_frame`
    pivoted) and written by ``DataFrame.to_csv``."""
    from zsrbench.leaderboard.frame import to_csv as frame_csv

    return frame_csv(ts)


# ---------------------------------------------------------------------------------------------------- LaTeX
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "ε": r"$\epsilon$", "β": r"$\beta$",
        "κ": r"$\kappa$", "·": r"$\cdot$", "–": "--", "—": "---", "→": r"$\rightarrow$", "∧": r"$\wedge$",
        DAGGER: r"\textsuperscript{\dag}", DDAGGER: r"\textsuperscript{\ddag}", SECTION: r"\textsuperscript{\S}",
        "…": r"\dots{}", "±": r"$\pm$", "≥": r"$\geq$", "≤": r"$\leq$", "−": r"$-$"}


def tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def _tex_cell(cell: Cell | None) -> str:
    if cell is None or cell.value is None:
        return "--"
    marks = "".join(r"\textsuperscript{*}" if m == STAR else tex(m) for m in cell.marks)
    pm = cell.pm()
    return cell.number() + marks + (r"\,{\scriptsize$\pm$" + pm[1:] + "}" if pm else "")


def to_latex(ts: TableSet) -> str:
    out = ["% generated by zsrbench table --latex; needs \\usepackage{booktabs}"]
    for g, metric in _tables(ts):
        cols = g.columns
        out.append(r"\begin{table}[t]")
        out.append(r"\centering")
        proxy = f" — {g.proxy_line}" if g.proxy_line else ""
        out.append(r"\caption{" + tex(f"{g.title} — {METRIC_TITLES[metric]}{proxy}") + "}")
        out.append(r"\resizebox{\linewidth}{!}{%")
        before, after = _head(g)
        out.append(r"\begin{tabular}{" + ("rclll" if g.is_ranking else "rlll") + "r" * len(cols) + "l}")
        out.append(r"\toprule")
        out.append(" & ".join([*map(tex, before), *[tex(label) for _, label in _column_labels(g, metric)],
                               *after]) + r" \\")
        out.append(r"\midrule")
        for r in g.rows:
            pre, post = _row_texts(g, r)
            vals = [_tex_cell(r.cells[metric].get(k)) for k, _ in cols]
            out.append(" & ".join([*map(tex, pre), *vals, *map(tex, post)]) + r" \\")
        out.append(r"\bottomrule")
        out.append(r"\end{tabular}}")
        notes = _footnote_lines(g, [metric])
        if notes:
            out.append(r"\par\vspace{2pt}{\footnotesize")
            for line in notes:
                text = line[4:] if line.startswith("  - ") else line
                t = tex(text)
                if text.startswith(STAR + " "):
                    t = r"\textsuperscript{*}" + tex(text[1:])
                out.append(("\\quad " if line.startswith("  - ") else "") + t + r"\\")
            out.append("}")
        out.append(r"\end{table}")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------- JSON
def to_data(ts: TableSet) -> dict[str, Any]:
    def pct(x: float | None) -> float | None:
        return None if x is None else round(100 * x, 6)

    def cell(c: Cell) -> dict[str, Any]:
        return {"value": pct(c.value), "marks": c.marks, "lo": pct(c.lo) if c.has_interval else None,
                "hi": pct(c.hi) if c.has_interval else None}

    return {
        "unit": "percent",
        "warnings": ts.warnings,
        "groups": [
            {
                "protocol": g.protocol, "protocol_version": g.version, "kind": g.kind, "subset": g.subset,
                "variant": g.variant,
                "title": g.title, "proxy": g.proxy, "suite": g.suite, "eps": g.eps_text,
                "datasets": g.datasets, "dataset_notes": g.dataset_notes, "train_dataset": g.train_dataset,
                "normalised_average": g.normalised,
                "average_columns": [{"key": k, "label": label} for k, label in g.avg_columns],
                "rows": [
                    {"rank": r.rank, "ranked": r.ranked, "group": r.group, "status": r.status, "audit": r.audit,
                     "model": r.label, "model_id": r.model_id, "kind": r.kind, "source": r.source, "source_text": r.source_text,
                     "entry": r.entry, "revision": r.revision, "entries": r.entries, "suites": r.suites,
                     "vs_above": r.vs_above, "reported_protocol": r.reported_protocol,
                     "notes": {m: r.notes[m] for m in ts.metrics},
                     **{m: {k: cell(c) for k, c in r.cells[m].items()} for m in ts.metrics}}
                    for r in g.rows
                ],
                "footnotes": {m: [{"mark": f.mark, "title": f.title, "items": f.items} for f in g.footnotes.get(m, [])]
                              for m in ts.metrics},
                "sources": g.sources,
                "footer": g.footer,
            }
            for g in ts.groups
        ],
    }


def to_json(ts: TableSet) -> str:
    return json.dumps(to_data(ts), indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}h3{font-size:.95rem;color:#555}
table{border-collapse:collapse;font-size:.85rem;margin-bottom:.5rem}
th,td{padding:.25rem .5rem;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th{cursor:pointer;background:#f4f4f4;position:sticky;top:0}th:hover{background:#e8e8e8}
td.l,th.l{text-align:left}tr.reported td{color:#555;font-style:italic}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
.notes{font-size:.8rem;color:#444}p.proxy{color:#a60}.warn{color:#a60}small.ci{color:#777}
tr.unranked td{color:#666}tr.unreliable td.status{color:#b00;font-weight:600}
"""
_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
  var asc=!th.classList.contains('asc');t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc')});
  th.classList.add(asc?'asc':'desc');var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows);
  function key(r){var c=r.cells[i],v=c.getAttribute('data-v');if(v===null)v=c.textContent;var n=parseFloat(v);
   return isNaN(n)?v.toLowerCase():n}
  rows.sort(function(a,c){var x=key(a),y=key(c),d=(typeof x==='number'&&typeof y==='number')?x-y:(x<y?-1:x>y?1:0);
   return asc?d:-d});rows.forEach(function(r){b.appendChild(r)})})})});
"""


def to_html(ts: TableSet, title: str = "zsrbench leaderboard") -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{e(title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>",
           '<p class="notes">Accuracy in %, ± half the width of the 95% interval (hover a cell for its bounds). '
           "Click a column header to sort. Rows marked <em>reported</em> are published numbers, shown with their "
           "source, never part of a measured average.</p>"]
    for w in ts.warnings:
        out.append(f'<p class="warn">{e(w)}</p>')
    for g in ts.groups:
        out.append(f"<h2>{e(g.title)}</h2>")
        if g.proxy_line:
            out.append(f'<p class="proxy"><strong>{e(g.proxy_line)}</strong></p>')
        for metric in ts.metrics:
            out.append(f"<h3>{e(METRIC_TITLES[metric])}</h3>")
            before, after = _head(g)
            out.append('<table class="sortable"><thead><tr>'
                       + "".join(("<th>" if h == "#" else '<th class="l">') + f"{e(h)}</th>" for h in before)
                       + "".join(f"<th>{e(label)}</th>" for _, label in _column_labels(g, metric))
                       + "".join(f'<th class="l">{e(h)}</th>' for h in after) + "</tr></thead><tbody>")
            for r in g.rows:
                tds = []
                for k, _ in g.columns:
                    c = r.cells[metric].get(k)
                    v = "-1" if c is None or c.value is None else f"{100 * c.value:.6f}"
                    if c is not None and c.has_interval:
                        tip = f"95% interval {c.bound('lo')}–{c.bound('hi')}"
                        tds.append(f'<td data-v="{v}" title="{e(tip)}">{e(_cell_text(c, interval=False))} '
                                   f'<small class="ci">{e(c.pm())}</small></td>')
                    else:
                        tds.append(f'<td data-v="{v}">{e(_cell_text(c))}</td>')
                pre, post = _row_texts(g, r)
                title_attr = f' title="{e(r.source_text)}"' if r.source_text else ""
                rank_v = "" if r.rank is not None else ' data-v="1e9"'
                cells = [f"<td{rank_v}>{e(pre[0])}</td>"]
                if g.is_ranking:
                    cells += [f'<td class="l">{e(pre[1])}</td>', f'<td class="l">{e(pre[2])}</td>',
                              f'<td class="l">{e(pre[3])}</td>', f'<td class="l status">{e(pre[4])}</td>']
                else:
                    cells += [f'<td class="l">{e(pre[1])}</td>', f'<td class="l"{title_attr}>{e(pre[2])}</td>',
                              f'<td class="l status">{e(pre[3])}</td>']
                classes = [r.kind] + ([] if r.rank is not None else ["unranked"])
                if (r.status or "").startswith("unreliable"):
                    classes.append("unreliable")
                out.append(f'<tr class="{e(" ".join(classes))}">{"".join(cells)}{"".join(tds)}'
                           f'<td class="l">{e(post[0])}</td></tr>')
            out.append("</tbody></table>")
        notes = _footnote_lines(g, ts.metrics)
        if notes:
            out.append('<div class="notes"><ul>')
            for line in notes:
                out.append(f"<li>{'&nbsp;&nbsp;' if line.startswith('  - ') else ''}{e(line.strip())}</li>")
            out.append("</ul></div>")
    if not ts.groups:
        out.append("<p>No leaderboard entries match.</p>")
    out.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------- terminal
def _rich_cell(g: Group, key: str, cell: Cell | None) -> str:
    """Per-dataset cells without their interval (readable in a terminal); averages with ±."""
    return _cell_text(cell, interval=key in dict(g.avg_columns))


def _rich_pre(g: Group, r: Row | None, narrow: bool = False) -> list[str]:
    """Terminal columns before the values: ranking tables keep a one-word status (details under the table),
    or none when the terminal is narrow."""
    if g.is_ranking:
        head = ["#", "Group", "Model"] if r is None else [_rank_text(r), r.group or DASH, r.label]
        return head if narrow else head + ["Status" if r is None else _short_status(r)]
    head = ["#", "Model", "Source"] if r is None else [_rank_text(r), r.label, r.source]
    return head if narrow else head + ["Status" if r is None else _short_status(r)]


def _rich_values(g: Group, r: Row, metrics: tuple[str, ...] | list[str], narrow: bool) -> list[str]:
    [metric] = metrics
    if narrow:  # averages only
        return [_cell_text(r.cells[metric].get(k)) for k, _ in g.avg_columns]
    return [_rich_cell(g, k, r.cells[metric].get(k)) for k, _ in g.columns]


def _rich_table(g: Group, metrics: tuple[str, ...] | list[str], narrow: bool, title: str) -> Any:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(title), title_justify="left")
    for h in _rich_pre(g, None, narrow):
        t.add_column(h, justify="right" if h == "#" else "left", overflow="fold")
    labels = [label for _, label in (g.avg_columns if narrow else _column_labels(g, metrics[0]))]
    rows = [[*_rich_pre(g, r, narrow), *_rich_values(g, r, metrics, narrow), _audit_text(r)] for r in g.rows]
    first = len(_rich_pre(g, None, narrow))
    for i, label in enumerate(labels):
        t.add_column(escape(label), justify="right", min_width=max([5, *(len(row[first + i]) for row in rows)]))
    t.add_column("Audit")
    for r, row in zip(g.rows, rows):
        t.add_row(*map(escape, row), style=_rich_style(r))
    return t


def _width(g: Group, metric: str) -> int:
    heads = [*_rich_pre(g, None), *[label for _, label in _column_labels(g, metric)], "Audit"]
    rows = [[*_rich_pre(g, r), *_rich_values(g, r, [metric], False), _audit_text(r)] for r in g.rows]
    return 1 + sum(3 + max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(heads))


def _rich_style(r: Row) -> str | None:
    if r.kind == "reported":
        return "italic dim"
    if (r.status or "").startswith("unreliable"):
        return "red"
    return "dim" if r.rank is None else None


def _new_lines(lines: list[str], shown: set[str]) -> list[str]:
    """Footnote lines less the items printed under an earlier table; a heading left with no items says so."""
    out: list[str] = []
    for line in lines:
        if line.startswith("  - ") and line in shown:
            continue
        shown.add(line)
        out.append(line)
    compact: list[str] = []
    for i, line in enumerate(out):
        heading = not line.startswith("  ") and line.endswith(":")
        if heading and (i + 1 == len(out) or not out[i + 1].startswith("  ")):
            compact.append(line[:-1] + ": as listed above")
        else:
            compact.append(line)
    return compact


def to_rich(ts: TableSet, console: Any) -> None:
    """Full tables when the terminal is wide enough, else one compact table of averages per group."""
    if not ts.groups:
        console.print("No leaderboard entries match.")
        return
    narrow = False
    shown: set[str] = set()  # footnote items already printed under an earlier table
    for g in ts.groups:
        if g.proxy_line:
            console.print(g.proxy_line, highlight=False, markup=False, style="bold")
        if all(_width(g, m) <= console.width for m in ts.metrics):
            for metric in ts.metrics:
                console.print(_rich_table(g, [metric], False, f"{g.title} — {METRIC_TITLES[metric]}"))
        else:
            narrow = True
            for metric in ts.metrics:
                console.print(_rich_table(g, [metric], True, f"{g.title} — {METRIC_TITLES[metric]}, averages over "
                                                             f"{len(g.datasets)} datasets"))
        for r in g.rows:  # each row's status in full (a suite table: the rows that are not ranked, reported rows)
            if g.is_ranking or not r.ranked:
                console.print(f"  {r.label} — {r.source} — {r.status}", highlight=False, markup=False,
                              style=_rich_style(r))
        for line in _new_lines(_footnote_lines(g, ts.metrics), shown):
            console.print(line, highlight=False, markup=False)
        console.print()
    if narrow:
        console.print("(per-dataset columns left out: the terminal is too narrow; use --markdown, --csv or --html)",
                      highlight=False, style="dim")


def render(ts: TableSet, fmt: str) -> str:
    return {"markdown": to_markdown, "csv": to_csv, "latex": to_latex, "html": to_html, "json": to_json}[fmt](ts)


# ---------------------------------------------------------------------------------------------------- compare
def format_p(p: float) -> str:
    if p >= 0.001:
        return f"{p:.3f}"
    return f"{p:.1e}" if p > 0 else "<1e-300"


def _pp(x: float) -> str:
    return f"{100 * x:+.2f}"


def _comparison_rows(c: Any) -> list[list[str]]:
    rows = []
    for line in c.lines:
        r = line.result
        rows.append([line.label, str(line.n), f"{100 * r.a:.2f}", f"{100 * r.b:.2f}", _pp(r.difference),
                     f"[{_pp(r.lo)}, {_pp(r.hi)}]", format_p(r.p), str(r.a_only), str(r.b_only)])
    return rows


COMPARISON_HEAD = ["", "n", "A (%)", "B (%)", "A − B", "95% interval", "p", "only A", "only B"]


def _comparison_header(c: Any) -> list[str]:
    a, b = c.a.entry, c.b.entry
    return [f"A: {c.name(c.a)} — {a.model.name}, {a.suite}, ε = {a.eps_text}",
            f"B: {c.name(c.b)} — {b.model.name}, {b.suite}, ε = {b.eps_text}",
            f"{c.metric} accuracy on the same samples of {len(c.datasets)} dataset(s) of {a.protocol.name} "
            f"v{a.protocol.version}"]


def _comparison_footer() -> list[str]:
    from zsrbench import stats

    return [f"A − B in percentage points; interval: paired bootstrap over samples ({stats.N_BOOTSTRAP} resamples, "
            "stratified by dataset for averages, percentile); p (two-sided): exact McNemar test per dataset, for "
            f"averages the {stats.TEST_DESCRIPTION}. only A / only B: samples one model gets right and the other not."]


def comparison_data(c: Any) -> dict[str, Any]:
    def side(le: Any) -> dict[str, Any]:
        e = le.entry
        return {"entry": c.name(le), "model": e.model.name, "model_id": e.model.id, "suite": e.suite, "eps": e.eps_text,
                "revision": e.revision}

    return {
        "unit": "percent", "metric": c.metric, "protocol": c.a.entry.protocol.name,
        "protocol_version": c.a.entry.protocol.version, "a": side(c.a), "b": side(c.b), "datasets": c.datasets,
        "rows": [{"key": line.key, "label": line.label, "n": line.n, "a": 100 * line.result.a, "b": 100 * line.result.b,
                  "difference": 100 * line.result.difference, "lo": 100 * line.result.lo, "hi": 100 * line.result.hi,
                  "p": line.result.p, "test": line.result.test, "only_a": line.result.a_only,
                  "only_b": line.result.b_only, "significant": line.result.significant}
                 for line in c.lines],
        "notes": c.notes, "method": _comparison_footer()[0],
    }


def comparison_markdown(c: Any) -> str:
    out = [f"- {_md_escape(h)}" for h in _comparison_header(c)] + [""]
    out.append("| " + " | ".join(COMPARISON_HEAD) + " |")
    out.append("|" + "|".join([":---"] + ["---:"] * (len(COMPARISON_HEAD) - 1)) + "|")
    for row in _comparison_rows(c):
        out.append("| " + " | ".join(_md_escape(x) for x in row) + " |")
    out.append("")
    out += [f"- {_md_escape(n)}" for n in [*c.notes, *_comparison_footer()]]
    return "\n".join(out) + "\n"


def comparison_rich(c: Any, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    for h in _comparison_header(c):
        console.print(h, highlight=False, markup=False)
    t = Table()
    for i, h in enumerate(COMPARISON_HEAD):
        t.add_column(h, justify="left" if i == 0 else "right")
    for row in _comparison_rows(c):
        t.add_row(*map(escape, row))
    console.print(t)
    for n in [*c.notes, *_comparison_footer()]:
        console.print(n, highlight=False, markup=False, style="dim")
