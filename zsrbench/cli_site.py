"""``zsrbench site OUT``: the static leaderboard website (a thin layer over :func:`zsrbench.site.build_site`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from zsrbench.cli_common import err_console, user_errors


def site(
    out: Path = typer.Argument(..., help="folder for the site: new, empty, or one an earlier `zsrbench site` made "
                                         "(replaced as a whole)"),
    leaderboard_dir: Optional[Path] = typer.Option(None, "--leaderboard-dir", help="the leaderboard (default: "
                                                   "leaderboards, or $ZSRBENCH_HOME/leaderboards)"),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="only this protocol (e.g. micro)"),
    title: Optional[str] = typer.Option(None, "--title", help="the site's title (default: zsrbench leaderboard)"),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="draw each entry's per-dataset figure"),
) -> None:
    """Build a static website of the leaderboard: ranking pages per protocol and ε (sortable, filterable), model
    cards and one page per entry, all working offline from file://."""
    from rich.markup import escape

    from zsrbench.site import DEFAULT_TITLE, build_site

    def log(line: str) -> None:
        err_console.print(escape(line), highlight=False)

    result = build_site(out, leaderboard_dir, protocol=protocol, title=title or DEFAULT_TITLE, figures=figures, log=log)
    for w in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    err_console.print(f"wrote {result.pages} page(s) and {result.figures} figure(s) to {escape(str(out))}",
                      highlight=False)
    typer.echo(str(result.index))


def register(app: typer.Typer) -> None:
    """Add ``site`` to ``app``."""
    app.command("site")(user_errors(site))
