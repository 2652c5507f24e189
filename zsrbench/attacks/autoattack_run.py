"""Running one AutoAttack suite on one batch, in named stages: the argument checks, the plan for the model's number
of classes, the official run inside the harness (eval mode, RNG seeded and restored), the final judgement, and the
``info`` record of what ran (see :mod:`zsrbench.attacks.autoattack` for the suites and their fallbacks).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from zsrbench.attacks.autoattack_log import flag, read_log, unique
from zsrbench.attacks.autoattack_official import (
    OfficialRun,
    config_record,
    pyautoattack_version,
    require_pyautoattack,
    run_official,
)
from zsrbench.attacks.autoattack_plan import PROTOCOL_ATTACKS, RAND_EOT_ITER, Plan, plan_attacks
from zsrbench.attacks.base import AttackOutput
from zsrbench.attacks.harness import attack_mode, check_inputs, finish, num_classes, preserved_rng
from zsrbench.errors import ZsrError


def run_autoattack(
    protocol: str,
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    seed: int = 0,
    n_iter: int = 100,
    n_restarts: int = 1,
    n_target_classes: int = 9,
    n_queries: int = 5000,
    eot_iter: int | None = None,
) -> AttackOutput:
    """Run the official AutoAttack ``protocol`` (a key of :data:`PROTOCOL_ATTACKS`) on one batch.

    ``eps`` in pixel units; the whole batch is one AutoAttack batch (the runner chooses the batch size).
    ``eot_iter`` (APGD's EOT iterations) is left as the official version sets it when None.
    """
    _check_arguments(protocol, eps, eot_iter)
    dtype = x.dtype
    device = x.device
    info = _base_info(protocol, seed)
    with torch.inference_mode(False):
        x, y = check_inputs(x, y)
        if x.shape[0] == 0:
            info.update(attacks=[], attacks_run=[], adjustments=[], warnings=[], flags=[])
            return AttackOutput(x_adv=x.to(dtype), success=torch.zeros(0, dtype=torch.bool, device=device), info=info)
        # every forward pass (class count, AutoAttack's checks and clean pass, the attacks, the final judgement) runs
        # inside the saved RNG state, from a generator seeded with `seed`: a randomised model's draws repeat
        with attack_mode(model), preserved_rng(device):
            torch.random.manual_seed(int(seed))
            n_cls = num_classes(model, x)
            plan = plan_attacks(PROTOCOL_ATTACKS[protocol], n_cls, n_target_classes)
            run = run_official(model, protocol, plan, x, y, eps=eps, seed=int(seed), device=device, n_iter=n_iter,
                               n_restarts=n_restarts, n_queries=n_queries, eot_iter=eot_iter)
            x_adv, success, notes = finish(model, x, y, run.x_adv, eps, dtype)

    aa_warnings, acc_after, initial = read_log(run.log)
    notes += _extra_notes(n_cls, plan, aa_warnings, run.y_pred.to(device) != y, success)
    standard = _is_standard(protocol, plan, run, n_iter=n_iter, n_restarts=n_restarts,
                            n_target_classes=n_target_classes, n_queries=n_queries)
    info.update(_record(n_cls, plan, run, aa_warnings, acc_after, initial, notes, standard, int(x.shape[0])))
    return AttackOutput(x_adv=x_adv, success=success, info=info)


def _check_arguments(protocol: str, eps: float, eot_iter: int | None) -> None:
    """Refuse a missing pyautoattack, an unknown protocol, a non-positive ε and a bad ``eot_iter``."""
    require_pyautoattack()
    if protocol not in PROTOCOL_ATTACKS:
        raise ValueError(f"unknown AutoAttack protocol {protocol!r}")
    if not (eps > 0 and math.isfinite(eps)):
        raise ZsrError(f"ε must be positive; got {eps}.")
    if eot_iter is not None and (isinstance(eot_iter, bool) or int(eot_iter) != eot_iter or int(eot_iter) < 1):
        raise ZsrError(f"eot_iter must be an integer ≥ 1; got {eot_iter!r}.")


def _base_info(protocol: str, seed: int) -> dict[str, Any]:
    """The part of ``info`` known before the run (also that of an empty batch)."""
    return {
        "implementation": f"pyautoattack {pyautoattack_version()} (official AutoAttack, Croce & Hein)",
        "pyautoattack_version": pyautoattack_version(),
        "protocol": protocol,
        "norm": "Linf",
        "seed": int(seed),
    }


def _extra_notes(
    n_cls: int, plan: Plan, aa_warnings: list[str], aa_success: torch.Tensor, success: torch.Tensor
) -> list[str]:
    """Notes on the expected 3-class warning and on samples AutoAttack judged otherwise than the final pass."""
    notes = []
    if n_cls == 3 and "apgd-dlr" in plan.attacks and any(flag(w) == "n_classes" for w in aa_warnings):
        notes.append(
            "AutoAttack's check_n_classes warns for C = 3 whenever a DLR attack runs; only the untargeted DLR "
            "(defined for 3 classes) is run here, so the warning is expected"
        )
    disagree = int((aa_success != success).sum())
    if disagree:
        notes.append(f"{disagree} sample(s) judged differently by AutoAttack and by the final forward pass; "
                     "the final forward pass is recorded")
    return notes


def _is_standard(
    protocol: str, plan: Plan, run: OfficialRun, *, n_iter: int, n_restarts: int, n_target_classes: int,
    n_queries: int,
) -> bool:
    """Whether the run is the official setting of its version, with no fallback (``info["standard"]``)."""
    return not plan.adjustments and (
        (protocol == "autoattack" and (n_iter, n_target_classes, n_queries) == (100, 9, 5000))
        or (protocol == "aa-rand" and (n_iter, n_restarts, int(run.aa.apgd.eot_iter)) == (100, 1, RAND_EOT_ITER)))


def _record(
    n_cls: int, plan: Plan, run: OfficialRun, aa_warnings: list[str], acc_after: dict[str, float],
    initial: float | None, notes: list[str], standard: bool, batch_size: int,
) -> dict[str, Any]:
    """The part of ``info`` that describes the run: plan, configuration, accuracies, warnings, notes."""
    return dict(
        n_classes=n_cls,
        attacks=list(plan.attacks),
        attacks_run=[a for a in plan.attacks if a in acc_after],
        n_target_classes=plan.n_target_classes,
        config=config_record(run.aa, plan.attacks),
        adjustments=list(plan.adjustments),
        fallback=plan.fallback,
        dropped=list(plan.dropped),
        substituted=dict(plan.substituted),
        standard=standard,
        clean_accuracy=initial,
        robust_accuracy_after=acc_after,
        warnings=aa_warnings,
        flags=unique([flag(w) for w in aa_warnings]),
        python_warnings=unique([f"{w.category.__name__}: {w.message}" for w in run.python_warnings]),
        notes=notes,
        batch_size=batch_size,
        stage_seconds={k: round(v, 3) for k, v in run.stage_s.items()},
    )
