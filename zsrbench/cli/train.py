"""``zsrbench train``: a thin typer command over :func:`zsrbench.training.train_defense`.

The lead mounts it on the main app (``app.command("train")(train)``). User errors (:class:`ZsrError`) are
printed without a traceback and exit with status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from zsrbench import paths
from zsrbench.cli.common import fail, make_console
from zsrbench.errors import ZsrError

console = make_console(stderr=True)


def _parse_sets(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ZsrError(f"--set expects KEY=VALUE (a hyper-parameter of the defense), got {item!r}.")
        out[key.strip().replace("-", "_")] = value
    return out


def train(
    defense: str = typer.Option(..., "--defense", "-d", help="defense to train: tecoa, pmg_aft, fare, tga_zsr, comp_tga, ucat, caw (zsrbench list defenses)"),
    protocol: str = typer.Option("tga16", "--protocol", "-p", help="protocol whose training set is used"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="folder holding the training data, or a template such as /data/{dataset}"),
    model: Optional[str] = typer.Option(None, "--model", help="open_clip architecture (default: the protocol's)"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="pretrained tag (default: the protocol's)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="training budget in optimiser steps (overrides epochs)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="training budget in epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="batch size"),
    lr: Optional[float] = typer.Option(None, "--lr", help="peak learning rate"),
    eps: Optional[str] = typer.Option(None, "--eps", help="training ε: 1 (units of 1/255), 1/255 or 0.0039"),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="any hyper-parameter, KEY=VALUE (repeatable), "
                                             "e.g. --set attention_norm=per_token --set precision=fp32"),
    seed: int = typer.Option(0, "--seed", help="seed (data order, attack starts, random init)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default <results dir>/train/<defense>-<protocol>-s<seed>; see --help of run)"),
    device: str = typer.Option("auto", "--device", help="cuda, cpu, or auto"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="continue from the last checkpoint in --out"),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="also checkpoint every N steps"),
    num_workers: int = typer.Option(0, "--num-workers", help="data-loading worker processes"),
    keep_checkpoints: bool = typer.Option(True, "--keep-checkpoints/--drop-checkpoints",
                                          help="keep checkpoints/last.pt after training finishes"),
) -> None:
    """Adversarially fine-tune CLIP's visual encoder with a defense; writes an open_clip folder + manifest."""
    from zsrbench.eps import parse_eps
    from zsrbench.training import train_defense

    try:
        overrides = _parse_sets(sets)
        out_dir = out or paths.results_dir() / "train" / f"{defense}-{protocol}-s{seed}"
        kwargs = {}
        if pretrained is not None or model is not None:
            kwargs["pretrained"] = pretrained
        result = train_defense(
            defense, protocol=protocol, model=model, data_root=data_root, out_dir=out_dir, hparams=overrides,
            steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, eps=parse_eps(eps), seed=seed, device=device,
            resume=resume, checkpoint_every=checkpoint_every, num_workers=num_workers,
            keep_checkpoints=keep_checkpoints, progress=console.is_terminal, **kwargs,
        )
    except ZsrError as exc:
        fail(str(exc))
    m = result.manifest
    last = m["loss_curve"][-1]["loss"] if m.get("loss_curve") else float("nan")
    status = "finished" if result.completed else "stopped early (run again to resume)"
    make_console().print(
        f"[bold]{m['defense']}[/] {status}: {m['steps']}/{m['total_steps']} steps, final loss {last:.4f}, "
        f"precision {m['precision']}\n  weights: {result.out_dir}"
        + (f" (sha256 {m.get('weights_sha256', '')[:16]}…)" if m.get("weights_sha256") else "")
        + f"\n  evaluate with: --defense {m['defense']} --checkpoint {result.out_dir}"
    )
