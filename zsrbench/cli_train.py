"""``zsrbench train``: a thin typer command over :func:`zsrbench.train.train_defense`.

The lead mounts it on the main app (``app.command("train")(train)``). User errors (:class:`ZsrError`) are
printed without a traceback and exit with status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from zsrbench.cli_common import fail
from zsrbench.errors import ZsrError

console = Console(stderr=True)


def _parse_sets(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ZsrError(f"--set expects KEY=VALUE (a hyper-parameter of the defense), got {item!r}.")
        out[key.strip().replace("-", "_")] = value
    return out


def train(
    defense: str = typer.Option(..., "--defense", "-d", help="defense to train: tecoa, pmg_aft, fare, tga_zsr, comp_tga"),
    protocol: str = typer.Option("tga16", "--protocol", "-p", help="protocol whose training set is used"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="folder holding the training data"),
    model: Optional[str] = typer.Option(None, "--model", help="open_clip architecture (default: the protocol's)"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="pretrained tag (default: the protocol's)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="training budget in optimiser steps (overrides epochs)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="training budget in epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="batch size"),
    lr: Optional[float] = typer.Option(None, "--lr", help="peak learning rate"),
    eps: Optional[float] = typer.Option(None, "--eps", help="training ε in units of 1/255"),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="any hyper-parameter, KEY=VALUE (repeatable), "
                                             "e.g. --set attention_norm=per_token --set precision=fp32"),
    seed: int = typer.Option(0, "--seed", help="seed (data order, attack starts, random init)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default results/train/<defense>-<protocol>-s<seed>)"),
    device: str = typer.Option("auto", "--device", help="cuda, cpu, or auto"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="continue from the last checkpoint in --out"),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="also checkpoint every N steps"),
    num_workers: int = typer.Option(0, "--num-workers", help="data-loading worker processes"),
    keep_checkpoints: bool = typer.Option(True, "--keep-checkpoints/--drop-checkpoints",
                                          help="keep checkpoints/last.pt after training finishes"),
) -> None:
    """Adversarially fine-tune CLIP's visual encoder with a defense; writes an open_clip folder + manifest."""
    from zsrbench.train import train_defense

    try:
        overrides = _parse_sets(sets)
        out_dir = out or Path("results") / "train" / f"{defense}-{protocol}-s{seed}"
        kwargs = {}
        if pretrained is not None or model is not None:
            kwargs["pretrained"] = pretrained
        result = train_defense(
            defense, protocol=protocol, model=model, data_root=data_root, out_dir=out_dir, hparams=overrides,
            steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, eps=eps, seed=seed, device=device,
            resume=resume, checkpoint_every=checkpoint_every, num_workers=num_workers,
            keep_checkpoints=keep_checkpoints, progress=console.is_terminal, **kwargs,
        )
    except ZsrError as exc:
        fail(str(exc))
    m = result.manifest
    last = m["loss_curve"][-1]["loss"] if m.get("loss_curve") else float("nan")
    status = "finished" if result.completed else "stopped early (run again to resume)"
    Console().print(
        f"[bold]{m['defense']}[/] {status}: {m['steps']}/{m['total_steps']} steps, final loss {last:.4f}, "
        f"precision {m['precision']}\n  weights: {result.out_dir}"
        + (f" (sha256 {m.get('weights_sha256', '')[:16]}…)" if m.get("weights_sha256") else "")
        + f"\n  evaluate with: --defense {m['defense']} --checkpoint {result.out_dir}"
    )
