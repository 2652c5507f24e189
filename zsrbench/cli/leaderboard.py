"""The leaderboard commands: ``zsrbench table``, ``show``, ``history``, ``validate`` and ``compare``.

Plain typer command functions; ``register(app)`` adds them to the main app. A :class:`ZsrError` is printed
without a traceback and exits 2; ``validate`` exits 1 when a file is bad.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from zsrbench import paths
from zsrbench.cli.common import make_console, user_errors
from zsrbench.log import LOG
from zsrbench.errors import ZsrError

if TYPE_CHECKING:
    from zsrbench.leaderboard.reading import StoreView
    from zsrbench.leaderboard.schema import ReportedData
    from zsrbench.leaderboard.table_model import TableSet

DEFAULT_LEADERBOARD = "$ZSRBENCH_HOME/leaderboards, else ./leaderboards"  # as help text (zsrbench.paths)


def _console() -> Console:
    return make_console()


def _err() -> Console:
    return make_console(stderr=True)


_errors = user_errors


def _known_protocol(name: str) -> None:
    """A protocol the leaderboard has no entry of must at least exist (a typo is an error, not an empty table)."""
    from zsrbench.registry import PROTOCOLS, load_builtins

    load_builtins()
    PROTOCOLS.get(name)


def _warn(text: str) -> None:
    LOG.warning(text)


def _note(text: str) -> None:
    _err().print(f"[dim]note:[/] {escape(text)}", highlight=False, soft_wrap=True)


FORMATS = ("markdown", "csv", "latex", "html", "json")


def table(
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="only this protocol (e.g. tga16)"),
    attack: Optional[str] = typer.Option(None, "--attack", "-a", help="only this attack suite (pgd, cw, pgd+cw, aa-lite…)"),
    eps: Optional[str] = typer.Option(None, "--eps", help="only this ε, in units of 1/255 (1, 4, 1/255)"),
    markdown: bool = typer.Option(False, "--markdown", help="print markdown"),
    csv_: bool = typer.Option(False, "--csv", help="print CSV"),
    latex: bool = typer.Option(False, "--latex", help="print LaTeX (booktabs)"),
    html_: bool = typer.Option(False, "--html", help="print a self-contained HTML page (sortable columns)"),
    json_: bool = typer.Option(False, "--json", help="print JSON"),
    results_dir: Optional[Path] = typer.Option(None, "--results-dir", help="tabulate raw results instead of a leaderboard"),
    leaderboard_dir: Optional[Path] = typer.Option(None, "--leaderboard-dir", help=f"leaderboard (default: {DEFAULT_LEADERBOARD}; "
                                                   "published numbers shipped with zsrbench fill in protocols it has none of)"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="an earlier state: a date/time (UTC) or a revision (r0002)"),
    worst_of: Optional[str] = typer.Option(None, "--worst-of", help="worst case of suites from per-sample flags, e.g. pgd,cw"),
    metric: str = typer.Option("both", "--metric", help="robust | clean | both"),
    no_reported: bool = typer.Option(False, "--no-reported", help="leave out reported (published) numbers"),
    protocol_version: str = typer.Option("latest", "--protocol-version", help="latest (per protocol), all, or a number"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write to this file instead of stdout"),
) -> None:
    """Leaderboard tables: first the ranking (worst case over every suite, ranking rules, significance groups),
    then one table per attack suite; columns = datasets + averages, each with its 95% interval."""
    from zsrbench.leaderboard import table_view, tables

    fmts = [f for f, on in zip(FORMATS, (markdown, csv_, latex, html_, json_)) if on]
    _check_table_options(fmts, metric, results_dir, leaderboard_dir, as_of, worst_of, attack)
    version = tables.parse_version(protocol_version)
    view = _load_view(results_dir, leaderboard_dir, protocol, as_of, no_reported)
    ts, warnings = table_view.view_tables(view, protocol=protocol, attack=attack, eps=eps, worst_of=worst_of,
                                          version=version, metric=metric, include_reported=not no_reported)
    for w in [*warnings, *ts.warnings]:
        _warn(w)
    _print_tables(ts, fmts[0] if fmts else None, output)


def _check_table_options(fmts: list[str], metric: str, results_dir: Path | None, leaderboard_dir: Path | None,
                         as_of: str | None, worst_of: str | None, attack: str | None) -> None:
    """``zsrbench table``'s options that do not go together, or a --metric it does not know: an error."""
    if len(fmts) > 1:
        raise ZsrError(f"Choose one output format; got --{' --'.join(fmts)}.")
    if metric not in ("robust", "clean", "both"):
        raise ZsrError(f"--metric takes robust, clean or both; got {metric!r}.")
    if results_dir is not None and leaderboard_dir is not None:
        raise ZsrError("Pass either --results-dir or --leaderboard-dir, not both.")
    if results_dir is not None and as_of is not None:
        raise ZsrError("--as-of needs a leaderboard (raw results have no revisions); drop --results-dir.")
    if worst_of is not None and attack is not None:
        raise ZsrError("--worst-of already names the suites; drop --attack.")


def _load_view(results_dir: Path | None, leaderboard_dir: Path | None, protocol: str | None, as_of: str | None,
               no_reported: bool) -> StoreView:
    """The entries ``zsrbench table`` tabulates (raw results or a leaderboard); warns of the files it cannot show
    and prints the notes on what it shows. A ``protocol`` with no entries must at least exist."""
    from zsrbench.leaderboard import board, store

    if results_dir is not None:
        view = store.entries_from_results(results_dir, protocol)
    else:
        view = board.load_leaderboard(leaderboard_dir, protocol, store.parse_as_of(as_of), reported=not no_reported)
    for path, reason in view.problems:
        _warn(f"{path}: {reason} — not shown; run `zsrbench validate` (nothing was changed)")
    for note in view.notes:
        _note(note)
    if protocol is not None and not any(le.entry.protocol.name == protocol for le in view.entries):
        _known_protocol(protocol)
    return view


def _print_tables(ts: TableSet, fmt: str | None, output: Path | None) -> None:
    """The tables in the terminal (no format), else as ``fmt`` on stdout or (``--output``) into a file."""
    from zsrbench.leaderboard import render, render_terminal

    if fmt is None:
        if output is not None:
            raise ZsrError("--output needs a format (--markdown, --csv, --latex, --html or --json).")
        render_terminal.to_rich(ts, _console())
        return
    text = render.render(ts, fmt)
    if output is not None:
        _write_output(output, text)
        _err().print(f"wrote {output}", highlight=False)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _write_output(output: Path, text: str) -> None:
    """``--output``: the whole file or, after an OSError, the file as it was (no partial file, no temporary one).
    A link is written through; a device or pipe (``/dev/stdout``) is written to directly."""
    import os

    from zsrbench.leaderboard import atomic

    target = Path(os.path.realpath(output))
    try:
        if os.path.exists(target) and not os.path.isfile(target):
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            atomic.replace_files([(target, text.encode("utf-8"))])
    except OSError as exc:
        raise atomic.user_error(output, exc, kept=f"{output} is as it was before", option="--output") from exc


def show(
    entry: str = typer.Argument(..., help="entry slug (or a unique part of it, protocol/slug, a path); @r0002 for a revision"),
    leaderboard_dir: Path = typer.Option(..., "--leaderboard-dir", default_factory=paths.leaderboard_dir,
                                      show_default=False, help=f"the leaderboard (default: {DEFAULT_LEADERBOARD})"),
    json_: bool = typer.Option(False, "--json", help="print the entry and its records as JSON"),
) -> None:
    """Everything behind a number: settings, checkpoint, samples, environment, revisions."""
    from zsrbench.leaderboard import entry_details

    edir, revision, hist = _locate(leaderboard_dir, entry)
    n, path, e = _pick_revision(edir, revision, hist)
    shipped = edir is None  # published numbers shipped with zsrbench, built in memory
    recs = entry_details.read_records(edir, e)
    if json_:
        data = entry_details.show_data(path, e, recs, hist)
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    c = _console()
    c.print(f"[bold]{escape(e.entry)}[/]  ({e.kind})", highlight=False)
    rows = entry_details.settings_rows(e, path, n, len(hist), recs, leaderboard_dir if shipped else None)
    kv = Table.grid(padding=(0, 2))
    kv.add_column(style="bold", no_wrap=True)
    kv.add_column(overflow="fold")
    for k, v in rows:
        kv.add_row(k, escape(v))
    c.print(kv)
    if e.measured is not None:
        c.print("[bold]per dataset[/] (accuracy in %)", highlight=False)
        for ds, m in e.measured.datasets.items():
            lines = entry_details.dataset_lines(ds, m, recs.get(ds))
            c.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)
    if e.reported is not None:
        _print_reported(c, e.reported)
    if e.audit is not None:
        from zsrbench.cli.audit import print_audit

        print_audit(e, c)
    if not shipped:
        _print_history(c, hist, title="revisions")


def _pick_revision(edir: Path | None, revision: int | None, hist: list[tuple[int, Path, Any]]) -> tuple[int, Path, Any]:
    """The revision asked for (None: the newest) among ``hist``: (number, file, entry); an error when it is
    missing or invalid."""
    from zsrbench.leaderboard import store

    pick = [h for h in hist if revision is None or h[0] == revision]
    if not pick:
        name = edir.name if edir is not None else hist[0][2].entry
        raise ZsrError(f"{name} has no revision {revision}; it has {', '.join(store.rev_name(n) for n, _, _ in hist)}.")
    n, path, e = pick[-1]
    if isinstance(e, ZsrError):
        raise ZsrError(f"{e} (run `zsrbench validate {path}`)")
    return n, path, e


def _print_reported(c: Console, reported: ReportedData) -> None:
    """A reported entry's published numbers, as printed in its source, with their notes."""
    for metric in ("robust", "clean"):
        nums = getattr(reported, metric)
        if nums is None:
            continue
        line = ", ".join(f"{d} {v:.2f}" for d, v in nums.per_dataset.items())
        avg = f"average {nums.average:.2f} ({nums.average_scope})" if nums.average is not None else "no average"
        mean = f"; per-dataset mean {nums.per_dataset_mean:.2f}" if nums.per_dataset_mean is not None else ""
        c.print(f"[bold]{metric} (%, as printed):[/] {escape(avg + mean)}" + (f"\n  {escape(line)}" if line else ""),
                highlight=False)
        for note in nums.notes:
            c.print(f"  note: {escape(note)}", highlight=False)


def _locate(leaderboard_dir: Path, name: str) -> tuple[Path | None, int | None, list[tuple[int, Path, Any]]]:
    """The folder of the entry ``name`` names, the revision asked for and all its revisions; the folder is None
    for a published entry shipped with zsrbench (one revision, in memory: the leaderboard holds no reported
    entries of its protocol)."""
    import re

    from zsrbench.leaderboard import board, reading, reported, store

    try:
        edir, revision = store.resolve_entry(leaderboard_dir, name)
    except reading.EntryNotFound:  # (several entries matching it stays an error)
        e = board.resolve_packaged(leaderboard_dir, name)
        if e is None:
            raise
        m = re.fullmatch(r"(.+)@r?(\d+)", name)
        csv = reported.packaged_csv_dir() / Path((e.reported.imported_from if e.reported else None) or "").name
        return None, int(m.group(2)) if m else None, [(e.revision, csv, e)]
    return edir, revision, store.history(edir)


def _print_history(c: Console, hist: list[tuple[int, Path, Any]], title: str) -> None:
    from zsrbench.leaderboard.entries import rev_name

    t = Table(title=title, title_justify="left")
    for col in ("revision", "created", "what changed"):
        t.add_column(col)
    for n, p, e in hist:
        if isinstance(e, ZsrError):
            t.add_row(rev_name(n), "?", f"[red]INVALID[/]: {escape(str(e).removeprefix(f'{p}: '))}")
        else:
            t.add_row(rev_name(n), e.created_at, escape("\n".join(e.changes) or "–"))
    c.print(t)


def history(
    entry: str = typer.Argument(..., help="entry slug (or a unique part of it, protocol/slug, a path)"),
    leaderboard_dir: Path = typer.Option(..., "--leaderboard-dir", default_factory=paths.leaderboard_dir,
                                      show_default=False, help=f"the leaderboard (default: {DEFAULT_LEADERBOARD})"),
    json_: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The revisions of an entry, oldest first, with what each one changed."""
    edir, _, hist = _locate(leaderboard_dir, entry)
    if edir is None:
        raise ZsrError(f"{hist[0][2].entry} is a published entry shipped with zsrbench, built in memory because "
                       f"{leaderboard_dir} holds no reported entries of {hist[0][2].protocol.name}: it has no "
                       f"revisions. `zsrbench show {hist[0][2].entry}` shows its numbers and source.")
    if json_:
        data = [{"revision": n, "file": str(p), "created_at": getattr(e, "created_at", None),
                 "changes": getattr(e, "changes", None), "error": str(e) if isinstance(e, ZsrError) else None}
                for n, p, e in hist]
        sys.stdout.write(json.dumps({"entry": f"{edir.parent.name}/{edir.name}", "revisions": data}, indent=2,
                                    ensure_ascii=False) + "\n")
        return
    _print_history(_console(), hist, title=f"{edir.parent.name}/{edir.name}")


def validate(
    path: Path = typer.Argument(..., default_factory=paths.leaderboard_dir, show_default=False,
                                help=f"a leaderboard, a results directory or one file (default: {DEFAULT_LEADERBOARD})"),
) -> None:
    """Check every file against the schema and every number against its per-sample flags, and look for leftovers
    of interrupted writes (exit 1 if any file is bad or left over)."""
    from zsrbench.leaderboard.validate import validate_path

    report = validate_path(path)
    err = _err()
    for p in report.warnings:
        err.print(f"[yellow]warning:[/] {escape(f'{p.path}: {p.reason}')}", highlight=False, soft_wrap=True)
    for p in report.errors:
        label = "leftover" if p.kind == "leftover" else "invalid"
        err.print(f"[bold red]{label}:[/] {escape(f'{p.path}: {p.reason}')}", highlight=False, soft_wrap=True)
    bad = sorted({str(p.path) for p in report.errors if p.kind != "leftover"})
    left = sorted({str(p.path) for p in report.errors if p.kind == "leftover"})
    if bad or left:
        parts = [f"{len(bad)} of {report.checked} file(s) invalid"] if bad else []
        parts += [f"{len(left)} leftover(s) of interrupted writes (each says whether it can be deleted)"] if left else []
        err.print(f"{'; '.join(parts)} under {path}. Nothing was changed.", highlight=False)
        raise typer.Exit(1)
    _console().print(f"{report.checked} file(s) under {path} valid.", highlight=False)


def compare(
    a: str = typer.Argument(..., help="entry A: slug (or a unique part of it, protocol/slug, a path); @r0002 for a revision"),
    b: str = typer.Argument(..., help="entry B, named the same way"),
    leaderboard_dir: Path = typer.Option(..., "--leaderboard-dir", default_factory=paths.leaderboard_dir,
                                      show_default=False, help=f"the leaderboard (default: {DEFAULT_LEADERBOARD})"),
    metric: str = typer.Option("robust", "--metric", help="robust | clean"),
    json_: bool = typer.Option(False, "--json", help="print JSON"),
    markdown: bool = typer.Option(False, "--markdown", help="print markdown"),
) -> None:
    """Two measured entries on the same samples: per dataset and for the averages, A − B with its paired 95%
    bootstrap interval and p-value (exact McNemar per dataset; paired permutation test for averages)."""
    from zsrbench.leaderboard import render_compare
    from zsrbench.leaderboard.compare import compare_entries, load_named

    if json_ and markdown:
        raise ZsrError("Choose one output format; got --json --markdown.")
    if metric not in ("robust", "clean"):
        raise ZsrError(f"--metric takes robust or clean; got {metric!r}.")
    result = compare_entries(load_named(leaderboard_dir, a), load_named(leaderboard_dir, b), metric)
    if json_:
        sys.stdout.write(json.dumps(render_compare.comparison_data(result), indent=2, ensure_ascii=False) + "\n")
    elif markdown:
        sys.stdout.write(render_compare.comparison_markdown(result))
    else:
        render_compare.comparison_rich(result, _console())


def register(app: typer.Typer) -> None:
    """Add ``table``, ``show``, ``history``, ``validate`` and ``compare`` to ``app``."""
    app.command("table")(_errors(table))
    app.command("compare")(_errors(compare))
    app.command("show")(_errors(show))
    app.command("history")(_errors(history))
    app.command("validate")(_errors(validate))
