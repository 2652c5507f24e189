"""``zsrbench pretrain``: pretrain a protocol's own CLIP from scratch (only ``micro`` has one).

The lead mounts :func:`pretrain` on the main app (``app.command("pretrain")(pretrain)``); the module also runs
alone: ``python -m zsrbench.cli.pretrain --protocol micro --steps 1000``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from zsrbench.cli.common import fail, make_console
from zsrbench.errors import ZsrError


def pretrain(
    protocol: str = typer.Option("micro", help="Protocol whose model to pretrain (only 'micro' ships one)."),
    out: Optional[Path] = typer.Option(
        None, help="Output folder (an open_clip local-dir model). Default: <cache>/pretrained/zsr-micro-seed<SEED>."
    ),
    ship: bool = typer.Option(False, "--ship", help="Write into the package (zsrbench/micro/weights/zsr-micro), "
                              "replacing the shipped weights."),
    seed: int = typer.Option(0, help="Seed of the initialisation and of the generated pretraining scenes."),
    steps: Optional[int] = typer.Option(None, help="Optimiser steps (default: the shipped model's)."),
    batch_size: Optional[int] = typer.Option(None, help="Image-caption pairs per step (default: the shipped model's)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default: the shipped model's)."),
    threads: int = typer.Option(2, help="CPU threads (torch.set_num_threads); results depend on it in the last bits."),
    eval_every: int = typer.Option(250, help="Report clean zero-shot accuracy every N steps (0: only at the end)."),
) -> None:
    """Pretrain the micro CLIP on generated captioned scenes (CPU, minutes) and write weights + manifest."""

    from zsrbench.micro import pretrain as P
    from zsrbench.models.shipped import WEIGHTS_DIR
    from zsrbench.paths import cache_dir

    console = make_console()
    try:
        if protocol != "micro":
            raise ZsrError(f"Protocol '{protocol}' has no model of its own to pretrain; only 'micro' does "
                           "(the others use published CLIP weights).")
        if ship and out is not None:
            raise ZsrError("Pass either --out or --ship, not both.")
        steps = P.DEFAULT_STEPS if steps is None else steps
        batch_size = P.DEFAULT_BATCH if batch_size is None else batch_size
        lr = P.DEFAULT_LR if lr is None else lr
        if steps < 1 or batch_size < 2:
            raise ZsrError("--steps must be ≥ 1 and --batch-size ≥ 2.")
        folder = WEIGHTS_DIR if ship else (out or cache_dir() / "pretrained" / f"zsr-micro-seed{seed}")
        command = (f"zsrbench pretrain --protocol micro --seed {seed} --steps {steps} --batch-size {batch_size} "
                   f"--lr {lr:g} --threads {threads}" + (" --ship" if ship else f" --out {folder}"))
        console.print(f"[bold]Pretraining zsr-micro[/bold] → {folder}\n  {command}")
        manifest = P.pretrain_micro(folder, seed=seed, steps=steps, batch_size=batch_size, lr=lr, threads=threads,
                                    eval_every=eval_every, command=command, log=console.print)
    except ZsrError as exc:
        fail(str(exc))
    from rich.table import Table

    table = Table(title=f"zsr-micro clean zero-shot accuracy (seed {seed}, {steps} steps)")
    check = manifest["clean_zero_shot_check"]
    n_test = next(iter(manifest["clean_zero_shot"].values()))["n"]
    n_check = next(iter(check.values()))["n"]
    for col in ("task", "classes", f"acc (test, {n_test})", "normalised (test)", f"normalised (check, {n_check})"):
        table.add_column(col)
    for name, r in manifest["clean_zero_shot"].items():
        table.add_row(name, str(r["num_classes"]), f"{100 * r['acc']:.1f}", f"{r['normalised']:.3f}",
                      f"{check[name]['normalised']:.3f}")
    console.print(table)
    console.print(f"weights sha256 {manifest['weights_sha256']} ({manifest['weights_bytes'] / 1e6:.1f} MB)")


app = typer.Typer(add_completion=False)
app.command()(pretrain)

if __name__ == "__main__":  # pragma: no cover
    app()
