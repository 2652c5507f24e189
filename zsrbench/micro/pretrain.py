"""Pretrain the micro CLIP (``zsr-micro``) from scratch on generated captioned scenes, on a CPU.

The CLIP contrastive loss (symmetric cross-entropy over a batch of image–caption pairs, learnable
temperature) on fresh scenes at every step: step ``t`` of seed ``s`` draws its batch from
``torch.Generator().manual_seed(PRETRAIN_SEED_BASE * (s + 1) + t)``, which never meets a test-set or
train-split seed. The captions describe scenes freely; no caption contains a zero-shot prompt (see
:mod:`zsrbench.micro.generator`). The output folder is an open_clip ``local-dir:`` model (config + fp16
safetensors) with a ``manifest.json`` that records how to rebuild it bit for bit on the same software.

``pretrain_micro(out_dir, seed=0, steps=DEFAULT_STEPS)`` is what ``zsrbench pretrain --protocol micro`` runs.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from zsrbench.micro import generator as G
from zsrbench.micro import tasks as T
from zsrbench.models.shipped import ARCH, MANIFEST_FILE, WEIGHTS_FILE
from zsrbench.models.clip import CLIP_MEAN, CLIP_STD

DEFAULT_STEPS = 6000
DEFAULT_BATCH = 128
POS_EMBED_INIT_STD = 0.5
DEFAULT_LR = 1e-3
PRETRAIN_SEED_BASE = 10_000_019
CONFIG_FILE = "open_clip_config.json"


def model_config() -> dict[str, Any]:
    from zsrbench.models.clip import CONFIG_DIR

    return json.loads((CONFIG_DIR / f"{ARCH}.json").read_text())


def batch(seed: int, step: int, batch_size: int) -> tuple[torch.Tensor, list[str]]:
    """The images (uint8) and captions of pretraining step ``step``."""
    g = torch.Generator().manual_seed(PRETRAIN_SEED_BASE * (seed + 1) + step)
    scenes, varied = G.sample_groups(batch_size, g)
    images = G.render(scenes, g)
    return images, G.captions(scenes, PRETRAIN_SEED_BASE * (seed + 1) + step, keep=varied)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name or "embedding" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


@torch.no_grad()
def zero_shot_accuracy(model: torch.nn.Module, tokenizer: Any, *, split: str = "test",
                       task_names: tuple[str, ...] | None = None, batch_size: int = 250) -> dict[str, dict[str, float]]:
    """Clean zero-shot accuracy of an open_clip ``model`` on a split of the micro tasks (via ZeroShotClassifier)."""
    from zsrbench.models.classifier import ZeroShotClassifier, compute_text_head

    was_training = model.training
    model.eval()
    out: dict[str, dict[str, float]] = {}
    for name in task_names or tuple(T.TASKS):
        task = T.TASKS[name]
        head = compute_text_head(model, tokenizer, [[p] for p in task.prompts()], "cpu")
        clf = ZeroShotClassifier(model.visual, head, image_size=G.IMAGE_SIZE)
        images, labels = T.generate_split(name, split)
        correct = 0
        for i in range(0, len(labels), batch_size):
            x = images[i : i + batch_size].float() / 255
            correct += int((clf(x).argmax(1) == labels[i : i + batch_size]).sum())
        acc = correct / len(labels)
        out[name] = {"acc": acc, "normalised": T.normalised(acc, len(task.classnames)), "n": len(labels),
                     "num_classes": len(task.classnames)}
    model.train(was_training)
    return out


def _versions() -> dict[str, str]:
    import numpy
    import open_clip

    import zsrbench

    v = {"python": platform.python_version(), "torch": torch.__version__, "open_clip": open_clip.__version__,
         "numpy": numpy.__version__, "zsrbench": zsrbench.__version__}
    try:
        import safetensors

        v["safetensors"] = safetensors.__version__
    except ImportError:  # pragma: no cover
        pass
    return v


def save_weights(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write a state dict as safetensors, byte-for-byte reproducible: names sorted and no ``__metadata__``
    (safetensors writes metadata keys in hash order, so the same weights would get a different sha256)."""
    from safetensors.torch import save_file

    save_file({k: state[k] for k in sorted(state)}, str(path))


def _rounded(acc: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    return {k: {kk: (round(vv, 4) if isinstance(vv, float) else vv) for kk, vv in v.items()} for k, v in acc.items()}


def evaluate_into_manifest(folder: str | Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measure the saved (fp16) weights in ``folder`` through the harness and write the accuracies into its
    manifest: the protocol's test sets (``clean_zero_shot``) and the larger check sets (``clean_zero_shot_check``).

    Evaluation does not touch the weights, so re-running it after a change of the test-set sizes keeps the
    manifest what ``zsrbench pretrain`` would now write.
    """
    from zsrbench.models.clip import build_clip

    folder = Path(folder)
    if manifest is None:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    parts = build_clip(f"local-dir:{folder.resolve()}")
    test = zero_shot_accuracy(parts.model, parts.tokenizer, split="test")
    check = zero_shot_accuracy(parts.model, parts.tokenizer, split="check")
    manifest["clean_zero_shot"] = _rounded(test)
    manifest["clean_zero_shot_check"] = _rounded(check)
    manifest["held_out_min_normalised"] = {
        "test": round(min(test[k]["normalised"] for k in T.HELD_OUT), 4),
        "check": round(min(check[k]["normalised"] for k in T.HELD_OUT), 4),
    }
    manifest["eval_sets"] = {"test": {"size": T.TEST_SIZE, "seeds": {t.name: t.seed for t in T.TASK_LIST}},
                             "check": {"size": T.CHECK_SIZE, "seed_offset": T.CHECK_SEED_OFFSET}}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def pretrain_micro(
    out_dir: str | Path,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    *,
    batch_size: int = DEFAULT_BATCH,
    lr: float = DEFAULT_LR,
    weight_decay: float = 0.05,
    warmup: int | None = None,
    threads: int | None = 2,
    eval_every: int = 250,
    command: str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train ``zsr-micro`` from scratch and write ``out_dir`` (config, fp16 weights, manifest). Returns the manifest."""
    out = Path(out_dir)
    model, tokenizer, cfg = _setup(out, seed, threads)
    opt = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = max(1, steps // 10) if warmup is None else warmup
    lr_at = _lr_schedule(lr, warmup, steps)
    t0 = time.time()
    losses, evals = _train(model, tokenizer, opt, lr_at, seed=seed, steps=steps, batch_size=batch_size,
                           eval_every=eval_every, log=log)
    train_s = time.time() - t0
    weights = _save_model(model, out, cfg)
    manifest = _manifest(
        seed=seed, steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
        threads=threads, cfg=cfg, losses=losses, evals=evals, weights=weights, train_s=train_s,
        command=command or f"zsrbench pretrain --protocol micro --seed {seed} --steps {steps} --out {out}",
    )
    manifest = evaluate_into_manifest(out, manifest)
    if log:
        final = manifest["clean_zero_shot_check"]
        log(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB) in {train_s:.0f}s; held-out normalised "
            + ", ".join(f"{k[6:]} {final[k]['normalised']:.2f}" for k in T.HELD_OUT))
    return manifest


def _setup(out: Path, seed: int, threads: int | None) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """The freshly initialised model (seeded), its tokenizer and its config; ``out`` is created."""
    from zsrbench.models.clip import _open_clip

    oc = _open_clip()
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model_config()
    model = oc.create_model(ARCH, pretrained=None, device="cpu")
    # larger learnable position embeddings than open_clip's init (std width^-0.5): at this scale the ViT
    # otherwise sits on a long plateau before it uses where things are (position, count, shape)
    with torch.no_grad():
        model.visual.positional_embedding.normal_(std=POS_EMBED_INIT_STD)
    tokenizer = oc.get_tokenizer(ARCH)
    model.train()
    return model, tokenizer, cfg


def _lr_schedule(lr: float, warmup: int, steps: int) -> Callable[[int], float]:
    """The learning rate of step ``t``: linear warm-up over ``warmup`` steps, then cosine to 0 at ``steps``."""

    def lr_at(t: int) -> float:
        if t < warmup:
            return lr * (t + 1) / warmup
        return 0.5 * lr * (1 + math.cos(math.pi * (t - warmup) / max(1, steps - warmup)))

    return lr_at


def _train(model: torch.nn.Module, tokenizer: Any, opt: torch.optim.Optimizer, lr_at: Callable[[int], float], *,
           seed: int, steps: int, batch_size: int, eval_every: int,
           log: Callable[[str], None] | None) -> tuple[list[float], list[dict[str, Any]]]:
    """The training loop: one fresh batch per step. Returns the loss of every step and the zero-shot accuracies
    measured every ``eval_every`` steps."""
    losses: list[float] = []
    evals: list[dict[str, Any]] = []
    t0 = time.time()
    for step in range(steps):
        images, caps = batch(seed, step, batch_size)
        x = images.float() / 255
        x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        tokens = tokenizer(caps)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss, scale = _contrastive_step(model, opt, x, tokens, len(caps))
        losses.append(float(loss.detach()))
        if log and (step % 25 == 0 or step == steps - 1):
            el = time.time() - t0
            log(f"step {step + 1}/{steps} loss {loss.item():.3f} scale {scale.item():.1f} "
                f"lr {lr_at(step):.2e} {el:.0f}s ({el / (step + 1):.2f}s/step)")
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            evals.append(_evaluate_during_training(model, tokenizer, step + 1, log))
    return losses, evals


def _contrastive_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, tokens: torch.Tensor,
                      n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on the CLIP contrastive loss of ``n`` image–caption pairs; returns (loss, scale)."""
    img = F.normalize(model.encode_image(x), dim=-1)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    scale = model.logit_scale.exp().clamp(max=100)
    logits = scale * img @ txt.t()
    y = torch.arange(n)
    loss = 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.t(), y))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return loss, scale


def _evaluate_during_training(model: torch.nn.Module, tokenizer: Any, done: int,
                              log: Callable[[str], None] | None) -> dict[str, Any]:
    """Normalised zero-shot accuracy on the check sets after ``done`` steps (logged), for the manifest."""
    acc = zero_shot_accuracy(model, tokenizer, split="check")
    if log:
        log("  zero-shot normalised: " + ", ".join(f"{k[6:]} {v['normalised']:.2f}" for k, v in acc.items()))
    return {"step": done, **{k: round(v["normalised"], 4) for k, v in acc.items()}}


def _save_model(model: torch.nn.Module, out: Path, cfg: dict[str, Any]) -> Path:
    """Ship fp16 weights as an open_clip local-dir model in ``out``; returns the weights file."""
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    weights = out / WEIGHTS_FILE
    save_weights(state, weights)
    (out / CONFIG_FILE).write_text(json.dumps({
        "model_cfg": cfg,
        "preprocess_cfg": {"mean": list(CLIP_MEAN), "std": list(CLIP_STD), "interpolation": "bicubic",
                           "resize_mode": "shortest"},
    }, indent=2) + "\n")
    return weights


def _loss_curve(losses: list[float], steps: int) -> dict[str, Any]:
    """The manifest's summary of the per-step losses: first, last window's mean, minimum and windowed means."""
    window = max(1, min(50, steps // 20))
    curve = [
        {"step": i + window, "loss": round(sum(losses[i : i + window]) / window, 4)}
        for i in range(0, len(losses) - window + 1, window)
    ]
    return {"first": round(losses[0], 4), "last": round(sum(losses[-window:]) / window, 4),
            "min": round(min(losses), 4), "window": window, "points": curve}


def _manifest(*, seed: int, steps: int, batch_size: int, lr: float, weight_decay: float, warmup: int,
              threads: int | None, cfg: dict[str, Any], losses: list[float], evals: list[dict[str, Any]],
              weights: Path, train_s: float, command: str) -> dict[str, Any]:
    """What ``manifest.json`` records about the run (before the clean accuracies of the saved weights)."""
    from zsrbench.models.weights import sha256_file

    return {
        "name": ARCH,
        "description": "micro CLIP pretrained from scratch by zsrbench on generated captioned scenes",
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "warmup": warmup,
        "pos_embed_init_std": POS_EMBED_INIT_STD,
        "schedule": "linear warm-up then cosine to 0; AdamW(0.9, 0.98, eps 1e-6); fp32 training, fp16 storage",
        "loss": "CLIP symmetric contrastive loss, learnable temperature clamped at 100",
        "threads": threads,
        "config": cfg,
        "generator": {"module": "zsrbench.micro.generator", "version": G.GENERATOR_VERSION,
                      "image_size": G.IMAGE_SIZE, "seed_of_step": f"{PRETRAIN_SEED_BASE} * (seed + 1) + step",
                      "group_size": G.GROUP_SIZE, "group_fraction": G.GROUP_FRACTION, "group_vary": G.GROUP_VARY},
        "loss_curve": _loss_curve(losses, steps),
        "zero_shot_during_training": {"split": "check", "normalised": evals},
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256_file(weights),
        "weights_bytes": weights.stat().st_size,
        "versions": _versions(),
        "train_seconds": round(train_s, 1),
        "cpu": platform.processor() or platform.machine(),
        "command": command,
        "argv": " ".join(shlex.quote(a) for a in sys.argv),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


if __name__ == "__main__":  # pragma: no cover - `python -m zsrbench.micro.pretrain OUT [SEED STEPS]`
    args = sys.argv[1:]
    pretrain_micro(args[0], seed=int(args[1]) if len(args) > 1 else 0,
                   steps=int(args[2]) if len(args) > 2 else DEFAULT_STEPS,
                   command="python -m zsrbench.micro.pretrain " + " ".join(args), threads=int(os.environ.get("ZSR_THREADS", "2")))
