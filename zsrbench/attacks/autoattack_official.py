"""The adapter around the official AutoAttack package (``pyautoattack``): building and configuring its objects for
a plan, running its standard evaluation with its log, warnings, check counters and trace function contained, and
the record of the configuration that ran. It configures the official objects only; it never edits their code.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, NamedTuple, Sequence

import torch

from zsrbench.attacks.autoattack_log import captured_autoattack_log, stage_seconds
from zsrbench.attacks.autoattack_plan import OFFICIAL_VERSIONS, Plan
from zsrbench.errors import ZsrError

try:  # the official code; a hard dependency of zsrbench, imported lazily so that the registry still loads
    import pyautoattack
    from pyautoattack import AutoAttack
    from pyautoattack import checks as _aa_checks
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
except ImportError:  # pragma: no cover - reported when an attack is run
    pyautoattack = None  # type: ignore[assignment]


def pyautoattack_version() -> str:
    if pyautoattack is None:
        return "not installed"
    return str(getattr(pyautoattack, "__version__", "unknown"))


def require_pyautoattack() -> None:
    """Raise a clear error when the official package is not installed."""
    if pyautoattack is None:
        raise ZsrError("The official AutoAttack package is missing: `pip install pyautoattack` (a zsrbench dependency)")


def configure(
    model: Any,
    protocol: str,
    plan: Plan,
    *,
    eps: float,
    seed: int,
    device: torch.device,
    n_iter: int,
    n_restarts: int,
    n_queries: int,
    eot_iter: int | None = None,
) -> "AutoAttack":
    """The official ``AutoAttack`` object for ``protocol``, set to run ``plan`` with the given settings."""
    if protocol in OFFICIAL_VERSIONS:
        # the official standard / rand version sets its own attacks, restarts, targets, queries (and EOT for rand)
        aa = AutoAttack(model, norm="Linf", eps=eps, version=OFFICIAL_VERSIONS[protocol], seed=seed, device=device)
    else:
        aa = AutoAttack(model, norm="Linf", eps=eps, version="custom", attacks=list(plan.attacks), seed=seed,
                        device=device)
    aa.attacks_to_run = list(plan.attacks)
    if int(n_iter) != int(aa.apgd.n_iter):
        # APGD derives its step-size checkpoints from n_iter in its constructor: build new official objects
        # (the version's settings carry over: restarts, targets, EOT iterations)
        aa.apgd = APGDAttack(aa.model, n_restarts=aa.apgd.n_restarts, n_iter=int(n_iter), verbose=False, eps=eps,
                             norm="Linf", eot_iter=aa.apgd.eot_iter, rho=0.75, seed=seed, device=device,
                             logger=aa.logger)
        targeted = aa.apgd_targeted
        aa.apgd_targeted = APGDAttack_targeted(
            aa.model, n_restarts=targeted.n_restarts, n_iter=int(n_iter), verbose=False, eps=eps,
            norm="Linf", eot_iter=targeted.eot_iter, rho=0.75, seed=seed, device=device, logger=aa.logger)
        aa.apgd_targeted.n_target_classes = targeted.n_target_classes
    aa.apgd.n_restarts = int(n_restarts)
    if eot_iter is not None:
        aa.apgd.eot_iter = int(eot_iter)
    if plan.n_target_classes is not None:
        aa.apgd_targeted.n_target_classes = int(plan.n_target_classes)
        aa.fab.n_target_classes = int(plan.n_target_classes)
    aa.square.n_queries = int(n_queries)
    return aa


def config_record(aa: "AutoAttack", attacks: Sequence[str]) -> dict[str, Any]:
    """The settings of each official attack in ``attacks`` as ``aa`` holds them (``info["config"]``)."""
    cfg: dict[str, Any] = {}
    if "apgd-ce" in attacks or "apgd-dlr" in attacks:
        cfg["apgd"] = {"n_iter": int(aa.apgd.n_iter), "n_restarts": int(aa.apgd.n_restarts),
                       "eot_iter": int(aa.apgd.eot_iter), "rho": float(aa.apgd.thr_decr)}
    if "apgd-t" in attacks:
        t = aa.apgd_targeted
        cfg["apgd-t"] = {"n_iter": int(t.n_iter), "n_restarts": int(t.n_restarts),
                         "n_target_classes": int(t.n_target_classes), "eot_iter": int(t.eot_iter)}
    if "fab-t" in attacks:
        # AutoAttack sets fab.n_restarts = 1 itself when it runs FAB-T
        cfg["fab-t"] = {"n_iter": int(aa.fab.n_iter), "n_restarts": 1, "n_target_classes": int(aa.fab.n_target_classes)}
    if "square" in attacks:
        s = aa.square
        cfg["square"] = {"n_queries": int(s.n_queries), "n_restarts": int(s.n_restarts), "p_init": float(s.p_init)}
    return cfg


class OfficialRun(NamedTuple):
    """What one run of the official AutoAttack gives back."""

    aa: Any  # the configured ``AutoAttack`` object
    x_adv: torch.Tensor  # AutoAttack's adversarial points
    y_pred: torch.Tensor  # AutoAttack's predictions on them
    log: list[tuple[int, str]]  # the captured ``(level, message)`` records of the ``auto-attack`` logger
    stage_s: dict[str, float]  # seconds of each stage (clean pass, each attack), from the log's times
    python_warnings: list[warnings.WarningMessage]  # the Python warnings raised during the run


def run_official(
    model: Any,
    protocol: str,
    plan: Plan,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    seed: int,
    device: torch.device,
    n_iter: int,
    n_restarts: int,
    n_queries: int,
    eot_iter: int | None,
) -> OfficialRun:
    """Configure the official AutoAttack for ``plan`` and run its standard evaluation on ``x`` as one batch.

    Its log and the Python warnings are captured, the dynamic-defense check's global counters are reset before the
    run, and a trace function the check leaves behind is replaced by the previous one afterwards.
    """
    old_trace = sys.gettrace()
    with captured_autoattack_log() as log, warnings.catch_warnings(record=True) as py_warnings:
        warnings.simplefilter("always")
        aa = configure(model, protocol, plan, eps=eps, seed=seed, device=device, n_iter=n_iter,
                       n_restarts=n_restarts, n_queries=n_queries, eot_iter=eot_iter)
        for k in list(_aa_checks.funcs):  # the dynamic-defense check's counters are module globals
            _aa_checks.funcs[k] = 0
        try:
            x_aa, y_aa = aa.run_standard_evaluation(x, y, batch_size=int(x.shape[0]))
        finally:
            if sys.gettrace() is not old_trace:
                sys.settrace(old_trace)
    return OfficialRun(aa=aa, x_adv=x_aa, y_pred=y_aa, log=log.records,
                       stage_s=stage_seconds(log.records, log.stamps), python_warnings=py_warnings)
