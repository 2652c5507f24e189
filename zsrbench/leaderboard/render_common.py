"""The texts every table format shares (:mod:`zsrbench.leaderboard.render`): metric titles, cell texts, the
columns before and after the values, the footnote lines under a table, markdown escaping."""

from __future__ import annotations

from zsrbench.leaderboard.table_model import DAGGER, DDAGGER, SECTION, STAR, Cell, Footnote, Group, Row

METRIC_TITLES = {"robust": "Robust accuracy (%)", "clean": "Clean accuracy (%)"}
DATASET_NOTES_TITLE = "Datasets whose robust column says little about the models (tagged in the column titles):"
DASH = "–"


def cell_text(cell: Cell | None, interval: bool = True) -> str:
    if cell is None or cell.value is None:
        return DASH
    text = cell.number() + "".join(cell.marks)
    return f"{text} {cell.pm()}" if interval and cell.has_interval else text


def rank_text(r: Row) -> str:
    return DASH if r.rank is None else str(r.rank)


def audit_text(r: Row) -> str:
    return r.audit or DASH


def column_labels(g: Group, metric: str) -> list[tuple[str, str]]:
    """The value columns' (key, title): in a robust table a dataset with a note is tagged (``micro_background
    (saturated)``; the notes are about robust accuracy)."""
    tagged = g.dataset_notes if metric == "robust" else {}
    return [(k, g.dataset_label(k) if k in tagged else label) for k, label in g.columns]


def head(g: Group) -> tuple[list[str], list[str]]:
    """Column titles before and after the value columns."""
    before = ["#", "Group", "Model", "Source", "Status"] if g.is_ranking else ["#", "Model", "Source", "Status"]
    return before, ["Audit"]


def row_texts(g: Group, r: Row) -> tuple[list[str], list[str]]:
    """Texts of the columns before and after the value columns (matching :func:`head`)."""
    if g.is_ranking:
        before = [rank_text(r), r.group or DASH, r.label, r.source, r.status or ""]
    else:
        before = [rank_text(r), r.label, r.source, r.status or ""]
    return before, [audit_text(r)]


def footnote_lines(g: Group, metrics: tuple[str, ...] | list[str]) -> list[str]:
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


def md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")
