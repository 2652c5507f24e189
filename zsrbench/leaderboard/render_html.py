"""The leaderboard tables as a self-contained HTML page (``zsrbench table --html``): its style, the script that
sorts a table by a clicked column, one table per group and metric with the footnotes under each group."""

from __future__ import annotations

import html

from zsrbench.leaderboard.render_common import METRIC_TITLES, cell_text, column_labels, footnote_lines, head, row_texts
from zsrbench.leaderboard.table_model import Group, Row, TableSet

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


def _html_row(g: Group, r: Row, metric: str) -> str:
    """One table row: its cells (each value with its interval as a tooltip) and classes for the style."""
    e = html.escape
    tds = []
    for k, _ in g.columns:
        c = r.cells[metric].get(k)
        v = "-1" if c is None or c.value is None else f"{100 * c.value:.6f}"
        if c is not None and c.has_interval:
            tip = f"95% interval {c.bound('lo')}–{c.bound('hi')}"
            tds.append(f'<td data-v="{v}" title="{e(tip)}">{e(cell_text(c, interval=False))} '
                       f'<small class="ci">{e(c.pm())}</small></td>')
        else:
            tds.append(f'<td data-v="{v}">{e(cell_text(c))}</td>')
    pre, post = row_texts(g, r)
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
    return (f'<tr class="{e(" ".join(classes))}">{"".join(cells)}{"".join(tds)}'
            f'<td class="l">{e(post[0])}</td></tr>')


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
            before, after = head(g)
            out.append('<table class="sortable"><thead><tr>'
                       + "".join(("<th>" if h == "#" else '<th class="l">') + f"{e(h)}</th>" for h in before)
                       + "".join(f"<th>{e(label)}</th>" for _, label in column_labels(g, metric))
                       + "".join(f'<th class="l">{e(h)}</th>' for h in after) + "</tr></thead><tbody>")
            out += [_html_row(g, r, metric) for r in g.rows]
            out.append("</tbody></table>")
        notes = footnote_lines(g, ts.metrics)
        if notes:
            out.append('<div class="notes"><ul>')
            for line in notes:
                out.append(f"<li>{'&nbsp;&nbsp;' if line.startswith('  - ') else ''}{e(line.strip())}</li>")
            out.append("</ul></div>")
    if not ts.groups:
        out.append("<p>No leaderboard entries match.</p>")
    out.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(out) + "\n"
