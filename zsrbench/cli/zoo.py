"""``zsrbench zoo list | show NAME | fetch NAME``: the model zoo (published robust CLIP models, by name).

The zoo is data (``zsrbench/models/zoo.json``, read by :mod:`zsrbench.models.catalogue`); ``show`` adds the
published rows each model should reproduce, read from the reported data (``zsrbench/reported_data``).
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from zsrbench.cli.common import console, err_console, user_errors

zoo_app = typer.Typer(help="The model zoo: published robust CLIP models, loadable by name (--checkpoint NAME).",
                      no_args_is_help=True)


@zoo_app.callback()
def _zoo() -> None:
    """The model zoo: published robust CLIP models, loadable by name (`zsrbench run --checkpoint NAME`)."""


def _eps(value: float | None) -> str:
    return "?" if value is None else f"{value:g}/255"


def _cache_pins() -> set[str]:
    """Names of the models whose files this cache pinned on their first download."""
    from zsrbench.models import zoo_fetch

    return set(zoo_fetch.Pins(zoo_fetch.checkpoint_cache()).read())


def _pin(entry: Any, cache_pins: set[str]) -> str:
    return "pinned" if entry.pinned else "pinned in cache" if entry.name in cache_pins else "unpinned"


def _row(entry: Any, cache_pins: set[str]) -> dict[str, Any]:
    return {"name": entry.name, "defense": entry.defense, "architecture": entry.architecture,
            "train_eps": entry.train_eps, "format": entry.format, "pinned": entry.pinned,
            "pinned_in_cache": entry.name in cache_pins, "source": entry.kind}


@user_errors
def list_cmd(as_json: bool = typer.Option(False, "--json", help="print the list as JSON")) -> None:
    """List every model of the zoo: name, defense, architecture, training ε, format, pinned or not, source."""
    from zsrbench.models import catalogue

    entries = catalogue.entries()
    pins = _cache_pins()
    if as_json:
        typer.echo(json.dumps([_row(e, pins) for e in entries], indent=1))
        return
    table = Table(title=f"zsrbench model zoo ({len(entries)} models)")
    for col in ("name", "defense", "architecture", "ε", "format", "sha256", "source"):
        table.add_column(col)
    for e in entries:
        table.add_row(escape(e.name), e.defense, escape(e.architecture), _eps(e.train_eps), e.format, _pin(e, pins),
                      str(e.kind))
    console.print(table)
    console.print("`zsrbench zoo show NAME` for one model; `zsrbench run --checkpoint NAME` evaluates it.",
                  highlight=False)


def published_rows(entry: Any) -> list[dict[str, Any]]:
    """The reported-data rows ``entry`` should reproduce (its ``reproduces`` items, matched by file, method,
    source and, where an item lists them, attacks: a row of the same method that is another model is left out),
    each as the CSV has it."""
    from zsrbench.leaderboard.reported import packaged_csv_dir, read_rows

    out: list[dict[str, Any]] = []
    by_file: dict[str, list[Any]] = {}
    for want in entry.reproduces:
        f = str(want["file"])
        if f not in by_file:
            path = packaged_csv_dir() / f
            by_file[f] = read_rows(path) if path.is_file() else []
        for r in by_file[f]:
            if (r.method == want["method"] and r.source.startswith(str(want["source"]))
                    and r.attack in want.get("attacks", (r.attack,))):
                out.append({"file": f, "method": r.method, "model": r.model, "protocol": r.protocol,
                            "metric": r.metric, "attack": r.attack, "eps": r.eps, "average": r.average,
                            "per_dataset": dict(r.per_dataset),
                            "source": r.source})
    return out


def numbers_text(row: dict[str, Any]) -> str:
    """A published row's per-dataset numbers as text (``cifar10 30, cifar100 16.2``), or ``-``."""
    return ", ".join(f"{k} {v:g}" for k, v in row.get("per_dataset", {}).items()) or "-"


@user_errors
def show_cmd(name: str = typer.Argument(..., help="a model's name or alias (`zsrbench zoo list`)"),
             as_json: bool = typer.Option(False, "--json", help="print the entry as JSON")) -> None:
    """Everything the zoo knows about one model, with the published rows it should reproduce."""
    from zsrbench.models import catalogue, zoo_fetch

    entry = catalogue.get(name)
    info = entry.describe()
    info["source_url"] = zoo_fetch.source_url(entry)
    info["cache_path"] = str(zoo_fetch.manual_dir(entry))
    rows = published_rows(entry)
    if as_json:
        typer.echo(json.dumps({**info, "published_rows": rows}, indent=1, default=str))
        return
    table = Table(title=f"{entry.name}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    order = ("name", "aliases", "paper", "venue", "defense", "architecture", "base", "train_data", "train_eps",
             "kind", "source_url", "source", "size", "sha256", "format", "activation", "logit_scale", "licence",
             "tokenizer", "url", "cache_path", "notes")
    for k in order:
        v = info.get(k)
        if k == "train_eps":
            v = _eps(v)
        elif k == "sha256":
            v = v or "unpinned (pinned in the cache on first download)"
        elif k == "logit_scale" and v is None:
            v = "the checkpoint's own (else its base model's)"
        elif k == "tokenizer" and v is None:
            v = "the architecture's (open_clip's)"
        elif isinstance(v, (list, tuple)):
            v = ", ".join(str(x) for x in v) or "-"
        elif isinstance(v, dict):
            v = json.dumps(v)
        table.add_row("homepage" if k == "url" else k, escape("unknown" if v is None else str(v)))
    console.print(table)
    if rows:
        pub = Table(title="published rows it should reproduce (zsrbench/reported_data)")
        for col in ("protocol", "metric", "attack", "ε", "average", "per dataset", "source"):
            pub.add_column(col)
        for r in rows:
            avg = "-" if r["average"] is None else f"{r['average']:g}"
            pub.add_row(r["protocol"], r["metric"], r["attack"], r["eps"], avg, numbers_text(r), escape(r["source"]))
        console.print(pub)
    else:
        console.print("No published rows of this model are in zsrbench's reported data.", highlight=False)


@user_errors
def fetch_cmd(name: str = typer.Argument(..., help="a model's name or alias (`zsrbench zoo list`)"),
              sha256: str = typer.Option(None, "--sha256", help="also require this sha256 of the weights file")) -> None:
    """Download (or find in the cache) one model's file(s), check their sha256, and print the local path."""
    from zsrbench.models import catalogue, zoo_fetch

    entry = catalogue.get(name)
    path, prov = zoo_fetch.fetch(entry, expected_sha256=sha256)
    how = ("verified against the zoo's sha256" if prov.get("sha256_verified") else
           "pinned now (first download)" if prov.get("sha256_pinned_now") else
           "matches the sha256 pinned on its first download" if prov.get("sha256_pinned") else "checked")
    err_console.print(f"{entry.name}: sha256 {prov.get('checkpoint_sha256')} ({how})", highlight=False, soft_wrap=True)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add ``zoo`` (list, show, fetch) to ``app``."""
    zoo_app.command("list")(list_cmd)
    zoo_app.command("show")(show_cmd)
    zoo_app.command("fetch")(fetch_cmd)
    app.add_typer(zoo_app, name="zoo")
