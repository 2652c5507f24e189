"""``zsrbench list``: what is registered (defenses, attacks, datasets, protocols)."""

from __future__ import annotations

import typer
from rich.table import Table

from zsrbench.cli.common import console, user_errors
from zsrbench.errors import ZsrError

LISTS = ("defenses", "attacks", "datasets", "protocols")


def list_cmd(what: str = typer.Argument("defenses", help="defenses | attacks | datasets | protocols")) -> None:
    """List registered defenses, attacks, datasets or protocols, with where each came from."""
    from zsrbench import catalog

    if what not in LISTS:
        raise ZsrError(f"Cannot list '{what}'; choose one of: {', '.join(LISTS)}.")
    rows = catalog.describe_entries(what)
    table = Table(title=f"zsrbench {what}")
    for col in rows[0].keys() if rows else ("name",):
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(v) for v in row.values()])
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``list`` to ``app``."""
    app.command("list")(user_errors(list_cmd))
