"""``zsrbench site OUT``: the static leaderboard website (a thin layer over :func:`zsrbench.site.build_site`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from zsrbench.cli.common import info, user_errors
from zsrbench.log import LOG


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

    from zsrbench.site import DEFAULT_TITLE, build_site

    result = build_site(out, leaderboard_dir, protocol=protocol, title=title or DEFAULT_TITLE, figures=figures,
                        log=info)
    for w in result.warnings:
        LOG.warning(w)
    info(f"wrote {result.pages} page(s) and {result.figures} figure(s) to {out}")
    typer.echo(str(result.index))


def register(app: typer.Typer) -> None:
    """Add ``site`` to ``app``."""
    app.command("site")(user_errors(site))
