"""Render :class:`~zsrbench.leaderboard.tables.TableSet` as markdown, CSV, LaTeX, HTML, JSON or a rich table.

Values are accuracies in % with two decimals. Marks (†, ‡, *, §) refer to the footnotes under each table;
``[n]`` refers to the group's sources (reported numbers).
"""

from __future__ import annotations

import csv
import html
import io
import json
from typing import Any

from zsrbench.leaderboard.tables import DAGGER, DDAGGER, SECTION, STAR, Cell, Footnote, Group, TableSet

METRIC_TITLES = {"robust": "Robust accuracy (%)", "clean": "Clean accuracy (%)"}
DASH = "–"


def _cell_text(cell: Cell | None) -> str:
    if cell is None or cell.value is None:
        return DASH
    return cell.number() + "".join(cell.marks)


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
        for metric in ts.metrics:
            out.append(f"**{METRIC_TITLES[metric]}**")
            out.append("")
            head = ["#", "Model", "Source", *[_md_escape(label) for _, label in g.columns]]
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "|".join(["---:", ":---", ":---"] + ["---:"] * len(g.columns)) + "|")
            for r in g.rows:
                vals = [_md_escape(_cell_text(r.cells[metric].get(k))) for k, _ in g.columns]
                out.append("| " + " | ".join([str(r.rank), _md_escape(r.label), _md_escape(r.source), *vals]) + " |")
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
    datasets: list[str] = []
    avgs: list[str] = []
    for g in ts.groups:
        datasets += [d for d in g.datasets if d not in datasets]
        avgs += [k for k, _ in g.avg_columns if k not in avgs]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["protocol", "protocol_version", "suite", "eps", "metric", "rank", "model", "kind", "source", "entry",
                "revision", *datasets, *avgs, "marks", "notes"])
    for g, metric in _tables(ts):
        for r in g.rows:
            cells = r.cells[metric]
            marks = sorted({m for c in cells.values() for m in c.marks})
            source = r.source_text if r.kind == "reported" else r.source
            w.writerow([g.protocol, g.version, g.suite, g.eps_text or "", metric, r.rank, r.label, r.kind, source,
                        r.entry, r.revision if r.revision is not None else "",
                        *[cells[d].number() if d in cells else "" for d in datasets],
                        *[cells[k].number() if k in cells else "" for k in avgs],
                        "".join(marks), " | ".join(r.notes[metric])])
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------- LaTeX
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "ε": r"$\epsilon$", "β": r"$\beta$",
        "κ": r"$\kappa$", "·": r"$\cdot$", "–": "--", "—": "---", "→": r"$\rightarrow$", "∧": r"$\wedge$",
        DAGGER: r"\textsuperscript{\dag}", DDAGGER: r"\textsuperscript{\ddag}", SECTION: r"\textsuperscript{\S}",
        "…": r"\dots{}"}


def tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def _tex_cell(cell: Cell | None) -> str:
    if cell is None or cell.value is None:
        return "--"
    marks = "".join(r"\textsuperscript{*}" if m == STAR else tex(m) for m in cell.marks)
    return cell.number() + marks


def to_latex(ts: TableSet) -> str:
    out = ["% generated by zsrbench table --latex; needs \\usepackage{booktabs}"]
    for g, metric in _tables(ts):
        cols = g.columns
        out.append(r"\begin{table}[t]")
        out.append(r"\centering")
        out.append(r"\caption{" + tex(f"{g.title} — {METRIC_TITLES[metric]}") + "}")
        out.append(r"\resizebox{\linewidth}{!}{%")
        out.append(r"\begin{tabular}{rll" + "r" * len(cols) + "}")
        out.append(r"\toprule")
        out.append(" & ".join([r"\#", "Model", "Source", *[tex(label) for _, label in cols]]) + r" \\")
        out.append(r"\midrule")
        for r in g.rows:
            vals = [_tex_cell(r.cells[metric].get(k)) for k, _ in cols]
            out.append(" & ".join([str(r.rank), tex(r.label), tex(r.source), *vals]) + r" \\")
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
    def cell(c: Cell) -> dict[str, Any]:
        return {"value": None if c.value is None else round(100 * c.value, 6), "marks": c.marks}

    return {
        "unit": "percent",
        "warnings": ts.warnings,
        "groups": [
            {
                "protocol": g.protocol, "protocol_version": g.version, "suite": g.suite, "eps": g.eps_text,
                "datasets": g.datasets, "train_dataset": g.train_dataset, "normalised_average": g.normalised,
                "average_columns": [{"key": k, "label": label} for k, label in g.avg_columns],
                "rows": [
                    {"rank": r.rank, "model": r.label, "kind": r.kind, "source": r.source, "source_text": r.source_text,
                     "entry": r.entry, "revision": r.revision, "notes": {m: r.notes[m] for m in ts.metrics},
                     **{m: {k: cell(c) for k, c in r.cells[m].items()} for m in ts.metrics}}
                    for r in g.rows
                ],
                "footnotes": {m: [{"mark": f.mark, "title": f.title, "items": f.items} for f in g.footnotes.get(m, [])]
                              for m in ts.metrics},
                "sources": g.sources,
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
.notes{font-size:.8rem;color:#444}.warn{color:#a60}
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
           '<p class="notes">Accuracy in %. Click a column header to sort. Rows marked <em>reported</em> are '
           "published numbers, shown with their source, never part of a measured average.</p>"]
    for w in ts.warnings:
        out.append(f'<p class="warn">{e(w)}</p>')
    for g in ts.groups:
        out.append(f"<h2>{e(g.title)}</h2>")
        for metric in ts.metrics:
            out.append(f"<h3>{e(METRIC_TITLES[metric])}</h3>")
            out.append('<table class="sortable"><thead><tr><th>#</th><th class="l">Model</th><th class="l">Source</th>'
                       + "".join(f"<th>{e(label)}</th>" for _, label in g.columns) + "</tr></thead><tbody>")
            for r in g.rows:
                tds = []
                for k, _ in g.columns:
                    c = r.cells[metric].get(k)
                    v = "-1" if c is None or c.value is None else f"{100 * c.value:.6f}"
                    tds.append(f'<td data-v="{v}">{e(_cell_text(c))}</td>')
                title_attr = f' title="{e(r.source_text)}"' if r.source_text else ""
                out.append(f'<tr class="{e(r.kind)}"><td>{r.rank}</td><td class="l">{e(r.label)}</td>'
                           f'<td class="l"{title_attr}>{e(r.source)}</td>{"".join(tds)}</tr>')
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
def _width(g: Group, metric: str) -> int:
    cols = [("#", [str(r.rank) for r in g.rows]), ("Model", [r.label for r in g.rows]),
            ("Source", [r.source for r in g.rows])]
    cols += [(label, [_cell_text(r.cells[metric].get(k)) for r in g.rows]) for k, label in g.columns]
    return 1 + sum(3 + max(len(h), *(len(v) for v in vals)) if vals else 3 + len(h) for h, vals in cols)


def to_rich(ts: TableSet, console: Any) -> None:
    """Full tables when the terminal is wide enough, else one compact table of averages per group."""
    from rich.markup import escape
    from rich.table import Table

    if not ts.groups:
        console.print("No leaderboard entries match.")
        return
    narrow = False
    for g in ts.groups:
        if all(_width(g, m) <= console.width for m in ts.metrics):
            for metric in ts.metrics:
                t = Table(title=escape(f"{g.title} — {METRIC_TITLES[metric]}"), title_justify="left")
                t.add_column("#", justify="right")
                t.add_column("Model")
                t.add_column("Source")
                for _, label in g.columns:
                    t.add_column(escape(label), justify="right")
                for r in g.rows:
                    t.add_row(str(r.rank), escape(r.label), escape(r.source),
                              *[escape(_cell_text(r.cells[metric].get(k))) for k, _ in g.columns],
                              style="italic dim" if r.kind == "reported" else None)
                console.print(t)
        else:
            narrow = True
            t = Table(title=escape(f"{g.title} — accuracy (%), averages over {len(g.datasets)} datasets"),
                      title_justify="left")
            t.add_column("#", justify="right")
            t.add_column("Model")
            t.add_column("Source")
            for metric in ts.metrics:
                for _, label in g.avg_columns:
                    t.add_column(escape(f"{metric} {label}"), justify="right")
            for r in g.rows:
                vals = [_cell_text(r.cells[m].get(k)) for m in ts.metrics for k, _ in g.avg_columns]
                t.add_row(str(r.rank), escape(r.label), escape(r.source), *map(escape, vals),
                          style="italic dim" if r.kind == "reported" else None)
            console.print(t)
        for line in _footnote_lines(g, ts.metrics):
            console.print(line, highlight=False, markup=False)
        console.print()
    if narrow:
        console.print("(per-dataset columns left out: the terminal is too narrow; use --markdown, --csv or --html)",
                      highlight=False, style="dim")


def render(ts: TableSet, fmt: str) -> str:
    return {"markdown": to_markdown, "csv": to_csv, "latex": to_latex, "html": to_html, "json": to_json}[fmt](ts)
