"""``zsrbench data ...``: commands about the local datasets.

cli.py mounts it as ``app.add_typer(data_app, name="data")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from zsrbench.cli.common import fail, make_console
from zsrbench.errors import ZsrError

if TYPE_CHECKING:  # the dataset code (and torch) is imported only when a data command runs
    from zsrbench.data.check import DatasetStatus
    from zsrbench.data.prepare import Prepared

data_app = typer.Typer(help="Check and prepare the local datasets the protocols read (--data-root).",
                       no_args_is_help=True)

STATUS_STYLE = {"found": "green", "missing": "yellow"}  # zsrbench.data.check.FOUND, MISSING
DATA_ROOT_HELP = ("Folder that holds the datasets, or a template with {dataset} for one folder per dataset, e.g. "
                  "'/data/{dataset}' (docs/data.md).")
DATASETS_HELP = "Comma-separated dataset names (default: the 16 of tga16)."
CHANGED = ("downloaded", "sorted", "extracted")  # zsrbench.data.prepare.DOWNLOADED, SORTED, EXTRACTED


@data_app.callback()
def _data() -> None:
    """Check and prepare the local datasets the protocols read (--data-root; see docs/data.md)."""


def _names(datasets: Optional[str]) -> list[str] | None:
    names = [n.strip() for n in datasets.split(",") if n.strip()] if datasets else None
    if datasets is not None and not names:
        fail("--datasets was given but names no dataset; pass a comma-separated list such as cifar10,dtd, or leave "
             "it out for the 16 of tga16.")
    return names


def _template(data_root: str) -> bool:
    """Whether --data-root is a template; a bad template, or a path the filesystem cannot look up, fails (exit 2)."""
    from zsrbench.data.layout import is_root_template, require_usable_root

    try:
        templated = is_root_template(data_root)
        require_usable_root(data_root)
    except ZsrError as exc:
        fail(str(exc))
    return templated


@data_app.command("check")
def check(
    data_root: Annotated[str, typer.Option("--data-root", help=DATA_ROOT_HELP)],
    datasets: Annotated[Optional[str], typer.Option("--datasets", help=DATASETS_HELP)] = None,
    deep: Annotated[
        bool, typer.Option("--deep", help="Decode every image (slow) and report the datasets with broken ones.")
    ] = False,
) -> None:
    """Report, per dataset, whether it is found under DATA_ROOT, with its number of images and classes.

    Reads metadata and the first and last image only; --deep decodes every image. Exits 1 when a dataset named
    in --datasets is missing or unusable; without --datasets it only reports.
    """
    names = _names(datasets)
    if not _template(data_root) and not Path(data_root).expanduser().exists():
        fail(f"Data root {data_root} does not exist. Pass the folder that holds (or will hold) the datasets; "
             f"`zsrbench data prepare --data-root {data_root}` creates it and downloads what torchvision can.")
    console = make_console()
    try:
        from zsrbench.data.check import check_data_root

        statuses = check_data_root(data_root, names, deep=deep)
    except ZsrError as exc:
        fail(str(exc))
    console.print(status_table(statuses, data_root))
    for s in statuses:  # the full story of every problem; of a missing dataset only when it was asked for
        if not s.ok and (names or s.status != "missing"):
            console.print(f"[bold]{s.name}[/bold] ({s.status}): {escape(s.message)}", soft_wrap=True,
                          highlight=False)
    n_ok = sum(s.ok for s in statuses)
    console.print(f"{n_ok} of {len(statuses)} datasets found under {data_root}", highlight=False)
    missing = [s.name for s in statuses if s.status == "missing"]
    if missing and not names:
        console.print(f"To see where each missing dataset is expected and how to obtain it: zsrbench data check "
                      f"--data-root {_quoted(data_root)} --datasets {','.join(missing)}", soft_wrap=True,
                      highlight=False)
    hint = prepare_hint(statuses, data_root)
    if hint:
        console.print(hint, soft_wrap=True, highlight=False)
    if names and n_ok < len(statuses):
        raise typer.Exit(1)


def prepare_hint(statuses: list[DatasetStatus], data_root: str) -> str:
    """The command that downloads the missing datasets torchvision can fetch, or sorts ImageNet's val/."""
    from zsrbench.data.tga16_table import SOURCES

    fetchable = [s.name for s in statuses if s.status == "missing" and s.name in SOURCES and SOURCES[s.name].fetch]
    flat = [s.name for s in statuses if s.name == "imagenet" and s.status == "wrong layout"]  # e.g. a flat val/
    names = fetchable + flat
    if not names:
        return ""
    return (f"To download what torchvision can{' and sort ImageNet val/' if flat else ''}: zsrbench data prepare "
            f"--data-root {_quoted(data_root)} --datasets {','.join(names)} (or pass --download to zsrbench run)")


def _quoted(data_root: str) -> str:
    import shlex

    return shlex.quote(str(data_root))


@data_app.command("prepare")
def prepare(
    data_root: Annotated[str, typer.Option("--data-root", help=DATA_ROOT_HELP)],
    datasets: Annotated[Optional[str], typer.Option("--datasets", help=DATASETS_HELP)] = None,
    download: Annotated[bool, typer.Option("--download/--no-download", help="Download the missing datasets "
                                           "torchvision can fetch (its dataset classes, md5 checked).")] = True,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Compare the md5 of the files present with "
                                         "the checksums torchvision publishes.")] = True,
    imagenet_labels: Annotated[Optional[Path], typer.Option(
        "--imagenet-labels", help="ImageNet validation labels for sorting a flat val/: LOC_val_solution.csv, "
        "ILSVRC2012_validation_ground_truth.txt (meta.mat beside it) or ILSVRC2012_devkit_t12.tar.gz (default: "
        "looked for in the imagenet folder and the data root).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be done; download and move nothing.")
                       ] = False,
) -> None:
    """Download what torchvision can, verify checksums, sort ImageNet's flat val/ and say what to fetch by hand.

    Per dataset of tga16: one that is there is verified (md5, where torchvision publishes it); a missing one is
    downloaded into its data root where torchvision can, otherwise the exact folder to put it in is printed;
    ImageNet's flat val/ is sorted into val/<wnid>/ (moving each file once; safe to interrupt and re-run). Nothing
    there is deleted or overwritten. Exits 1 when something failed (a download, a checksum, a sort) or a dataset
    named in --datasets is still not usable.
    """
    names = _names(datasets)
    _template(data_root)
    from zsrbench.data.prepare import prepare as run_prepare

    console = make_console()
    try:
        done = run_prepare(data_root, names, download=download, verify=verify, imagenet_labels=imagenet_labels,
                           dry_run=dry_run, on_done=lambda p: console.print(_line(p), soft_wrap=True,
                                                                            highlight=False))
    except ZsrError as exc:
        fail(str(exc))
    console.print(prepared_table(done, data_root))
    for p in done:  # the story of every change and of every problem
        if not p.ok or p.action in CHANGED:
            console.print(f"[bold]{p.name}[/bold] ({escape(p.action)}): {escape(p.message)}", soft_wrap=True,
                          highlight=False)
    n_ok = sum(p.ok for p in done)
    console.print(f"{n_ok} of {len(done)} datasets ready under {data_root}"
                  + (" (dry run: nothing was changed)" if dry_run else ""), highlight=False)
    if any(p.failed for p in done) or (names and n_ok < len(done) and not dry_run):
        raise typer.Exit(1)


def _line(p: Prepared) -> str:
    style = "green" if p.ok else ("red" if p.failed else "yellow")
    return f"[{style}]{p.name}[/{style}]: {escape(p.action)}"


def prepared_table(done: list[Prepared], data_root: str) -> Table:
    table = Table(title=f"zsrbench data prepare --data-root {data_root}")
    for name in ("dataset", "before", "done", "now"):
        table.add_column(name, no_wrap=True)
    table.add_column("folder", overflow="fold")
    for p in done:
        style = STATUS_STYLE.get(p.status, "red")
        table.add_row(p.name, p.before, f"[red]{p.action}[/red]" if p.failed else p.action,
                      f"[{style}]{p.status}[/{style}]", _relative(p.path, data_root))
    return table


def status_table(statuses: list[DatasetStatus], data_root: str) -> Table:
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


def _relative(path: str | None, data_root: str) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).relative_to(Path(data_root).expanduser()))
    except ValueError:  # another folder, or a template's per-dataset folder: shown whole
        return path
