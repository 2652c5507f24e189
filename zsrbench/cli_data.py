"""``zsrbench data ...``: commands about the local datasets.

cli.py mounts it as ``app.add_typer(data_app, name="data")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from zsrbench.cli_common import fail
from zsrbench.errors import ZsrError

if TYPE_CHECKING:  # the dataset code (and torch) is imported only when a data command runs
    from zsrbench.data.check import DatasetStatus

data_app = typer.Typer(help="Inspect the local datasets the protocols read (--data-root).", no_args_is_help=True)

STATUS_STYLE = {"found": "green", "missing": "yellow"}  # zsrbench.data.check.FOUND, MISSING


@data_app.callback()
def _data() -> None:
    """Inspect the local datasets the protocols read (--data-root)."""


@data_app.command("check")
def check(
    data_root: Annotated[Path, typer.Option("--data-root", help="Folder that holds the datasets.")],
    datasets: Annotated[
        Optional[str], typer.Option("--datasets", help="Comma-separated dataset names (default: the 16 of tga16).")
    ] = None,
    deep: Annotated[
        bool, typer.Option("--deep", help="Decode every image (slow) and report the datasets with broken ones.")
    ] = False,
) -> None:
    """Report, per dataset, whether it is found under DATA_ROOT, with its number of images and classes.

    Reads metadata and the first and last image only; --deep decodes every image. Exits 1 when a dataset named
    in --datasets is missing or unusable; without --datasets it only reports.
    """
    names = [n.strip() for n in datasets.split(",") if n.strip()] if datasets else None
    if datasets is not None and not names:
        fail("--datasets was given but names no dataset; pass a comma-separated list such as cifar10,dtd, or leave "
             "it out for the 16 of tga16.")
    if not data_root.expanduser().exists():
        fail(f"Data root {data_root} does not exist. Pass the folder that holds (or will hold) the datasets; "
             "`zsrbench data check --data-root DIR` then shows, per dataset, where it is expected.")
    console = Console()
    try:
        from zsrbench.data.check import check_data_root

        statuses = check_data_root(data_root, names, deep=deep)
    except ZsrError as exc:
        fail(str(exc))
    console.print(status_table(statuses, data_root))
    for s in statuses:  # the full story of every problem; of a missing dataset only when it was asked for
        if not s.ok and (names or s.status != "missing"):
            console.print(f"[bold]{s.name}[/bold] ({s.status}): {s.message}", soft_wrap=True, highlight=False)
    n_ok = sum(s.ok for s in statuses)
    console.print(f"{n_ok} of {len(statuses)} datasets found under {data_root}", highlight=False)
    missing = [s.name for s in statuses if s.status == "missing"]
    if missing and not names:
        console.print(f"To see where each missing dataset is expected and how to obtain it: zsrbench data check "
                      f"--data-root {data_root} --datasets {','.join(missing)}", soft_wrap=True, highlight=False)
    if names and n_ok < len(statuses):
        raise typer.Exit(1)


def status_table(statuses: list[DatasetStatus], data_root: Path) -> Table:
    table = Table(title=f"datasets under {data_root}")
    table.add_column("dataset", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("images", justify="right", no_wrap=True)
    table.add_column("classes", justify="right", no_wrap=True)
    table.add_column("folder", overflow="fold")
    for s in statuses:
        style = STATUS_STYLE.get(s.status, "red")
        table.add_row(
            s.name,
            f"[{style}]{s.status}[/{style}]",
            "" if s.n_images is None else f"{s.n_images:,}",
            "" if s.n_classes is None else str(s.n_classes),
            _relative(s.path, data_root),
        )
    return table


def _relative(path: str | None, data_root: Path) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).relative_to(data_root))
    except ValueError:
        return path
