"""Evaluating one work unit: the clean pass, then every attack of the suite on the clean-correct samples.

A sample is robust only if it is classified correctly clean and survives every attack of the suite. Every
attack runs on all clean-correct samples, so each attack's own robust accuracy is known too.

Non-finite logits (NaN/inf) count against the model: a sample whose clean logits are non-finite is not correct
(its ``clean_pred`` is -1, no class), and one whose logits are non-finite on any point an attack tried in its
ε-ball (watched during the attack by :class:`FiniteWitness`; an attack may return another point, e.g. AutoAttack
returns the clean image when its gradients are NaN) or on the attack's ``x_adv`` (one extra forward pass, under
the same autocast) is not robust to that attack. ``nonfinite`` marks both kinds.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from zsrbench.attacks.base import AttackSpec
from zsrbench.data.base import EvalSet
from zsrbench.defenses.test_time import TestTimeClassifier
from zsrbench.evaluation.units import UnitResult, assemble, unit_bounds


def batch_seed(seed: int, attack: str, start: int) -> int:
    """The attack seed of the unit that starts at position ``start``: from the run's seed, the attack and the
    unit only, never from the process that evaluates it."""
    h = hashlib.sha256(f"{seed}|{attack}|{start}".encode()).digest()
    return int.from_bytes(h[:4], "little")


def autocast(device: str, precision: str):
    if precision in ("fp32", "tf32"):
        return torch.autocast(device_type=device.split(":")[0], enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


class FiniteWitness(torch.nn.Module):
    """``clf`` as the attack sees it, unchanged (same outputs, gradients and random draws), that notes which
    samples got non-finite logits at any point the attack tried: a non-finite row is matched to the clean
    sample whose ε-ball (L∞) holds it. Rows are finite for a sound model, so the matching costs nothing then."""

    def __init__(self, clf: torch.nn.Module, x_clean: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.clf = clf
        self.x_clean = x_clean.detach().flatten(1)
        self.eps = float(eps)
        self.bad = torch.zeros(x_clean.shape[0], dtype=torch.bool, device=x_clean.device)

    def __getattr__(self, name: str) -> Any:  # the wrapped classifier's attributes, as an attack may read them
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("clf"), name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.clf(x)
        with torch.no_grad():
            rows = ~torch.isfinite(out.detach()).all(1)
            if bool(rows.any()):
                tried = x.detach()[rows].flatten(1).to(self.x_clean.dtype)
                dist = (tried[:, None, :] - self.x_clean[None, :, :]).abs().amax(2)  # [bad rows, samples]
                self.bad |= (dist <= self.eps * (1 + 1e-4) + 1e-6).any(0)
        return out


def evaluate_unit(clf: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, specs: Sequence[AttackSpec],
                  params: dict[str, dict[str, Any]], *, eps: float, seed: int, index: int, start: int,
                  device: str, precision: str, on_attack: Callable[[str, int], None] | None = None,
                  non_adaptive: bool = False) -> UnitResult:
    """The flags of one unit (``x``, ``y`` on ``device``; its first sample at position ``start``). ``on_attack``
    is told each attack as it starts, with the number of samples it attacks (for the progress display).

    A test-time defense's classifier (:class:`~zsrbench.defenses.test_time.TestTimeClassifier`) draws its
    randomness from its own generator, seeded here from the unit (clean pass and each attack), and judges every
    adversarial image itself: a sample is broken when the attack says so (adaptive: the attack ran through the
    defended classifier) or the defended classifier misclassifies the attack's ``x_adv``. ``non_adaptive``: the
    attacks see the bare classifier (as the test-time papers attack) and only the defended one's verdict counts."""
    pipeline = clf if isinstance(clf, TestTimeClassifier) else None
    t0 = time.perf_counter()
    if pipeline is not None:
        pipeline.reseed(batch_seed(seed, "defense", start))
    with torch.no_grad(), autocast(device, precision):
        logits = clf(x)
    finite = torch.isfinite(logits).all(1)
    pred = torch.where(finite, logits.argmax(1), torch.full_like(y, -1))  # a NaN/inf row predicts no class
    t1 = time.perf_counter()
    bad = ~finite
    correct = pred == y
    idx = correct.nonzero().squeeze(1)
    infos: dict[str, list[str]] = {"fallbacks": [], "autoattack_warnings": [], "notes": []}
    robust: dict[str, np.ndarray] = {}
    stages: dict[str, float] = {}
    for spec in specs:
        ok = correct.clone()
        if idx.numel():
            if on_attack is not None:
                on_attack(spec.name, int(idx.numel()))
            target = pipeline.attack_target if pipeline is not None and non_adaptive else clf
            if pipeline is not None:
                pipeline.reseed(batch_seed(seed, f"defense|{spec.name}", start))
            witness = FiniteWitness(target, x[idx], eps / 255.0)
            with autocast(device, precision):
                out = spec(witness, x[idx], y[idx], eps=eps, seed=batch_seed(seed, spec.name, start),
                           **params[spec.name])
            with torch.no_grad(), autocast(device, precision):  # x_adv whose logits are NaN/inf is no defense
                adv_logits = clf(out.x_adv.to(device))
            adv_finite = torch.isfinite(adv_logits).all(1) & ~witness.bad
            broken = out.success.to(device)
            if pipeline is not None:  # the defended classifier judges the adversarial images itself
                judged = adv_logits.argmax(1) != y[idx]
                broken = judged if non_adaptive else broken | judged
            ok[idx] = ~broken & adv_finite
            bad[idx] |= ~adv_finite
            _collect(infos, spec.name, out.info)
            for stage, seconds in (out.info.get("stage_seconds") or {}).items():
                stages[f"{spec.name}.{stage}_s"] = float(seconds)
        robust[spec.name] = ok.cpu().numpy()
    t2 = time.perf_counter()
    return UnitResult(index=index, labels=y.cpu().numpy(), clean_pred=pred.cpu().numpy(), robust=robust,
                      nonfinite=bad.cpu().numpy(), infos={k: sorted(set(v)) for k, v in infos.items()},
                      timing={"clean_s": t1 - t0, "attack_s": t2 - t1, "wall_s": t2 - t0, **stages})


def _collect(infos: dict[str, list[str]], attack: str, info: dict[str, Any]) -> None:
    for item in info.get("adjustments", []) or info.get("fallbacks", []):
        infos["fallbacks"].append(f"{attack}: {item}")
    for item in info.get("warnings", []):
        infos["autoattack_warnings"].append(f"{attack}: {item}")


def unit_loader(dataset: Dataset, batches: Iterable[list[int]], *, device: str, num_workers: int) -> DataLoader:
    """A loader yielding exactly ``batches`` (lists of positions in ``dataset``), in order; pinned memory and
    persistent workers on a GPU."""
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                      pin_memory=device.startswith("cuda"), persistent_workers=num_workers > 0)


def to_device(x: torch.Tensor, y: torch.Tensor, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    return x.to(device, non_blocking=True).float().contiguous(), y.to(device, non_blocking=True)


def evaluate_dataset(
    clf: torch.nn.Module, evalset: EvalSet, indices: Sequence[int], specs: Sequence[AttackSpec],
    params: dict[str, dict[str, Any]], *, eps: float, seed: int, batch_size: int, device: str, precision: str,
    num_workers: int = 0, on_batch: Callable[[int], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, list[str]], dict[str, float]]:
    """Per-sample flags (clean prediction, per-attack and worst-case robustness) for one dataset, unit by unit."""
    units = list(iter_units(clf, evalset, indices, specs, params, eps=eps, seed=seed, batch_size=batch_size,
                            device=device, precision=precision, num_workers=num_workers, on_batch=on_batch))
    return assemble(units, [s.name for s in specs])


def iter_units(clf: torch.nn.Module, evalset: EvalSet, indices: Sequence[int], specs: Sequence[AttackSpec],
               params: dict[str, dict[str, Any]], *, eps: float, seed: int, batch_size: int, device: str,
               precision: str, num_workers: int = 0, which: Sequence[int] | None = None,
               on_batch: Callable[[int], None] | None = None) -> Iterator[UnitResult]:
    """The units ``which`` (all by default) of one dataset, evaluated in order."""
    bounds = unit_bounds(len(indices), batch_size)
    which = list(range(len(bounds))) if which is None else list(which)
    loader = unit_loader(Subset(evalset.dataset, list(indices)), [list(range(*bounds[k])) for k in which],
                         device=device, num_workers=num_workers)
    for k, (x, y) in zip(which, loader):
        x, y = to_device(x, y, device)
        yield evaluate_unit(clf, x, y, specs, params, eps=eps, seed=seed, index=k, start=bounds[k][0],
                            device=device, precision=precision)
        if on_batch is not None:
            on_batch(x.shape[0])
