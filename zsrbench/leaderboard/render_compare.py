"""``zsrbench compare A B`` as output: the comparison (:func:`zsrbench.leaderboard.compare.compare_entries`) as
data, markdown or a rich table, with its header naming A and B and the footer naming the method."""

from __future__ import annotations

from typing import Any

from zsrbench.leaderboard.render_common import md_escape


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
    out = [f"- {md_escape(h)}" for h in _comparison_header(c)] + [""]
    out.append("| " + " | ".join(COMPARISON_HEAD) + " |")
    out.append("|" + "|".join([":---"] + ["---:"] * (len(COMPARISON_HEAD) - 1)) + "|")
    for row in _comparison_rows(c):
        out.append("| " + " | ".join(md_escape(x) for x in row) + " |")
    out.append("")
    out += [f"- {md_escape(n)}" for n in [*c.notes, *_comparison_footer()]]
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
