"""The leaderboard tables as markdown (``zsrbench table --markdown``): per group its title, the proxy line, one
table per metric with ``±h`` intervals, then the footnotes and sources as a list."""

from __future__ import annotations

from zsrbench.leaderboard.render_common import (
    METRIC_TITLES, cell_text, column_labels, footnote_lines, head, md_escape, row_texts,
)
from zsrbench.leaderboard.table_model import TableSet


def to_markdown(ts: TableSet) -> str:
    out: list[str] = []
    if not ts.groups:
        return "_No leaderboard entries match._\n"
    for g in ts.groups:
        out.append(f"## {md_escape(g.title)}")
        out.append("")
        if g.proxy_line:
            out += [f"**{md_escape(g.proxy_line)}**", ""]
        for metric in ts.metrics:
            out.append(f"**{METRIC_TITLES[metric]}**")
            out.append("")
            before, after = head(g)
            head_texts = [*before, *[md_escape(label) for _, label in column_labels(g, metric)], *after]
            out.append("| " + " | ".join(head_texts) + " |")
            align = ["---:", ":---:", ":---", ":---", ":---"] if g.is_ranking else ["---:", ":---", ":---", ":---"]
            out.append("|" + "|".join(align + ["---:"] * len(g.columns) + [":---"]) + "|")
            for r in g.rows:
                pre, post = row_texts(g, r)
                vals = [cell_text(r.cells[metric].get(k)) for k, _ in g.columns]
                out.append("| " + " | ".join(md_escape(t) for t in [*pre, *vals, *post]) + " |")
            out.append("")
        notes = footnote_lines(g, ts.metrics)
        if notes:
            for line in notes:
                if line.startswith("  - "):
                    out.append("  - " + md_escape(line[4:]))
                else:
                    out.append("- " + md_escape(line))
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
