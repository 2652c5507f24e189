"""The official AutoAttack (``pyautoattack``) as zsrbench attacks: ``autoattack``, ``aa-lite``, ``aa-fare`` and
``aa-rand``.

All four are untargeted L∞ attacks run by the official code (``pyautoattack.AutoAttack.run_standard_evaluation``,
worst case per sample over the attacks of the ensemble). This module only *configures* the official objects
(which attacks run, how many restarts, iterations, target classes, queries); it never edits or copies their code.

==============  ==================================================================================================
``autoattack``  the official standard version: APGD-CE (1 restart), APGD-T (9 target classes), FAB-T (9 target
                classes), Square (5000 queries); 100 iterations each for APGD and FAB
``aa-lite``     APGD-CE + untargeted APGD-DLR, 100 iterations, 1 restart: what the TeCoA/TGA-ZSR papers call
                "AutoAttack"
``aa-fare``     APGD-CE (5 restarts) + APGD-T (9 target classes, 1 restart), 100 iterations: the FARE protocol
``aa-rand``     the official ``rand`` version, for randomised defenses: APGD-CE + untargeted APGD-DLR, 100
                iterations, 1 restart, each step's gradient averaged over 20 forward passes (EOT, ``eot_iter=20``)
==============  ==================================================================================================

Fallbacks for problems with few classes
---------------------------------------
``C`` is the number of classes (``logits.shape[1]``, read from one forward pass). With pyautoattack 0.2.0:
untargeted DLR uses the 3rd-largest logit (needs ``C ≥ 3``), targeted DLR the 4th (needs ``C ≥ 4``), and APGD-T /
FAB-T index the ``k``-th most likely class for ``k`` up to ``n_target_classes + 1`` (needs ``n_target_classes ≤
C − 1``). Each of these otherwise raises ``IndexError`` as soon as one point survives the preceding attack. FAB-T
and Square need no third logit: FAB-T runs with ``C − 1`` targets down to ``C = 2`` (one target, the other class:
then it is the untargeted FAB of a binary problem), Square's margin loss is defined for any ``C ≥ 2``.
The adapter therefore runs:

=========  ==========================================  ==============================  ==========================
C          ``autoattack``                              ``aa-lite`` and ``aa-rand``     ``aa-fare``
=========  ==========================================  ==============================  ==========================
≥ 10       APGD-CE, APGD-T(9), FAB-T(9), Square        APGD-CE, APGD-DLR               APGD-CE ×5, APGD-T(9)
4 … 9      APGD-CE, APGD-T(C−1), FAB-T(C−1), Square    APGD-CE, APGD-DLR               APGD-CE ×5, APGD-T(C−1)
3          APGD-CE, APGD-DLR†, FAB-T(2), Square        APGD-CE, APGD-DLR               APGD-CE ×5, APGD-DLR† ×5
2          APGD-CE, FAB-T(1), Square (APGD-T dropped)  APGD-CE (APGD-DLR dropped)      APGD-CE ×5 (APGD-T dropped)
=========  ==========================================  ==============================  ==========================

† APGD-T is replaced by untargeted APGD-DLR (the margin-based loss that still exists with 3 classes), with the
restarts of the APGD-CE object it shares (1 for ``autoattack``, 5 for ``aa-fare``). With 2 classes no DLR loss
exists: the DLR-based attacks are dropped and APGD-CE is what remains (the spec's PCAM rule); FAB-T and Square are
not DLR-based and stay in ``autoattack``. Every drop, substitution and reduction of the number of target classes is
recorded in ``info["adjustments"]`` (``info["dropped"]``, ``info["substituted"]``, ``info["fallback"]``).
AutoAttack's own ``check_n_classes`` warns for ``C = 3`` whenever any DLR attack runs, also the untargeted one
(its check is coarse); that warning is recorded and explained in ``info["notes"]``.

The ``rand`` version (``aa-rand``)
----------------------------------
``aa-rand`` builds ``AutoAttack(version="rand")``, which sets APGD-CE and APGD-DLR with ``n_restarts = 1`` and
``eot_iter = 20`` (100 iterations, as every APGD object it builds) and skips AutoAttack's randomised-defense check
(the version exists for such defenses). The few-class fallbacks are those of ``aa-lite`` (2 classes: APGD-DLR
dropped, APGD-CE with EOT remains; recorded). ``n_iter``, ``n_restarts`` and ``eot_iter`` can be changed (a change
is recorded in the attack's params and in ``info["config"]``; ``info["standard"]`` is True only for the official
settings with no fallback). Success is judged as for every suite, by one final forward pass on ``x_adv``: for a
randomised model that is one draw of its randomness, like a clean evaluation. The draws are seeded: every APGD run
re-seeds torch's global generator with ``seed``, so a model drawing from it gives the same result for the same seed.

Other properties
----------------
* Inputs are passed as contiguous float32 NCHW tensors on ``x.device``; ``x_adv`` comes back in ``x``'s dtype,
  inside the ε-ball and the [0, 1] box (checked; a violation would be projected and recorded).
* ``success[i]`` is recomputed from one forward pass on ``x_adv``: the model misclassifies ``x_adv[i]`` (a sample
  misclassified clean counts as a success, with ``x_adv[i] = x[i]``).
* Determinism: every official attack re-seeds torch's global generator (CPU and CUDA) with ``seed`` at its start,
  so the same seed gives the same result. The caller's global RNG state is saved and restored around the call; inside
  it the generator is seeded with ``seed`` before the first forward pass, so a randomised model drawing from it (the
  class-count pass, AutoAttack's checks and clean pass, the final judging pass) also repeats with the seed.
* The model is attacked in ``eval()`` mode with its parameters' ``requires_grad`` switched off (FAB calls
  ``backward()``, which would otherwise accumulate parameter gradients); training flags and ``requires_grad`` are
  restored afterwards, existing ``.grad`` tensors are untouched.
* AutoAttack's checks (randomized / softmax output / dynamic defense / zero gradients / Square success / number of
  classes, see its ``flags_doc.md``) log warnings on the ``auto-attack`` logger: they are captured (not printed) into
  ``info["warnings"]`` and ``info["flags"]``, with the per-attack log lines (``info["robust_accuracy_after"]``,
  ``info["attacks_run"]``). The sub-attacks are built with ``verbose=False`` (they print nothing). Python warnings
  raised during the run are recorded in ``info["python_warnings"]``. AutoAttack's dynamic-defense check runs the
  model under ``sys.settrace``; the adapter resets that check's global counters before each run (so one model's
  flag does not leak into the next) and restores any previous trace function (debugger, coverage) afterwards.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from zsrbench.attacks.base import AttackOutput, AttackSpec
from zsrbench.errors import ZsrError
from zsrbench.registry import ATTACKS

try:  # the official code; a hard dependency of zsrbench, imported lazily so that the registry still loads
    import pyautoattack
    from pyautoattack import AutoAttack
    from pyautoattack import checks as _aa_checks
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
except ImportError:  # pragma: no cover - reported when an attack is run
    pyautoattack = None  # type: ignore[assignment]

AA_LOGGER = "auto-attack"  # the logger name pyautoattack's AutoAttack uses

#: the attacks of each protocol, in the order AutoAttack runs them
PROTOCOL_ATTACKS: dict[str, tuple[str, ...]] = {
    "autoattack": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "aa-lite": ("apgd-ce", "apgd-dlr"),
    "aa-fare": ("apgd-ce", "apgd-t"),
    "aa-rand": ("apgd-ce", "apgd-dlr"),
}
#: the suites configured from an official ``version`` (the others are ``version="custom"``)
OFFICIAL_VERSIONS = {"autoattack": "standard", "aa-rand": "rand"}
#: the EOT iterations the official ``rand`` version sets
RAND_EOT_ITER = 20
TARGETED = ("apgd-t", "fab-t")

FLAG_PATTERNS = (  # AutoAttack's check messages -> short flag names (see its flags_doc.md)
    ("randomized defense", "randomized"),
    ("probability distribution", "softmax_output"),
    ("dynamic defense", "dynamic"),
    ("zero gradient", "zero_gradients"),
    ("Square Attack has decreased", "square_success"),
    ("classes", "n_classes"),
)


def pyautoattack_version() -> str:
    if pyautoattack is None:
        return "not installed"
    return str(getattr(pyautoattack, "__version__", "unknown"))


# ---------------------------------------------------------------------------------------------------------------
# the fallback table
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Which official attacks run for a problem with ``n_classes`` classes, and what was changed to get there."""

    attacks: list[str]
    n_target_classes: int | None  # used by APGD-T and FAB-T (None when neither runs)
    adjustments: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    substituted: dict[str, str] = field(default_factory=dict)

    @property
    def fallback(self) -> bool:
        return bool(self.dropped or self.substituted)


def plan_attacks(attacks: Sequence[str], n_classes: int, n_target_classes: int = 9) -> Plan:
    """Apply the fallback table of the module docstring to the protocol ``attacks`` for ``n_classes`` classes."""
    c = int(n_classes)
    if c < 2:
        raise ZsrError(f"AutoAttack needs at least 2 classes; the model returns {c} logit(s) per sample.")
    if int(n_target_classes) < 1:
        raise ZsrError(f"n_target_classes must be ≥ 1; got {n_target_classes}.")
    out: list[str] = []
    adj: list[str] = []
    dropped: list[str] = []
    substituted: dict[str, str] = {}
    for a in attacks:
        if a == "apgd-dlr" and c < 3:
            dropped.append(a)
            adj.append(f"APGD-DLR dropped: the DLR loss needs ≥ 3 classes (C = {c}); falling back to APGD-CE only")
            continue
        if a == "apgd-t" and c < 4:
            if c == 3:
                substituted[a] = "apgd-dlr"
                adj.append(
                    "APGD-T replaced by untargeted APGD-DLR: the targeted DLR loss needs ≥ 4 classes (C = 3); "
                    "untargeted DLR is defined for 3 classes"
                )
                if "apgd-dlr" not in out and "apgd-dlr" not in attacks:
                    out.append("apgd-dlr")
            else:
                dropped.append(a)
                kept = ", ".join(x.upper() for x in attacks if x not in ("apgd-t", "apgd-dlr"))
                adj.append(
                    f"APGD-T dropped: DLR losses need ≥ 3 classes (C = {c}); falling back to {kept}"
                )
            continue
        out.append(a)
    targets: int | None = None
    if any(a in TARGETED for a in out):
        targets = min(int(n_target_classes), c - 1)
        if targets < int(n_target_classes):
            names = " and ".join(a.upper() for a in out if a in TARGETED)
            adj.append(f"{names}: {targets} target classes instead of {n_target_classes} (at most C − 1 = {c - 1})")
        if c == 2 and "fab-t" in out:
            adj.append("FAB-T kept with 1 target class (the other class): the untargeted FAB of a binary problem")
    return Plan(attacks=out, n_target_classes=targets, adjustments=adj, dropped=dropped, substituted=substituted)


# ---------------------------------------------------------------------------------------------------------------
# shared helpers (also used by the torchattacks adapter)
# ---------------------------------------------------------------------------------------------------------------


@contextmanager
def attack_mode(model: Any) -> Iterator[None]:
    """``model.eval()`` with parameter ``requires_grad`` off for the duration; everything restored afterwards.

    Attacks need gradients with respect to the input only. Switching the parameters off keeps third-party code
    that calls ``backward()`` (FAB) from accumulating ``.grad`` on them, and saves the parameter-gradient work.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    params = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        for m, training in modes:
            m.training = training


@contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Restore torch's global RNG state (CPU, and ``device`` when it is a CUDA device) on exit."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        yield


def num_classes(model: Any, x: torch.Tensor) -> int:
    """The number of classes: ``logits.shape[1]`` of one forward pass on the first sample."""
    with torch.no_grad():
        logits = model(x[:1])
    if logits.ndim != 2:
        raise ZsrError(f"The model must return logits of shape [batch, classes]; got shape {tuple(logits.shape)}.")
    return int(logits.shape[1])


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous float32 NCHW images in [0, 1] and int64 labels on ``x.device``."""
    if x.ndim != 4:
        raise ZsrError(f"Attacks expect a batch of images [N, C, H, W]; got shape {tuple(x.shape)}.")
    y = y.reshape(-1).to(device=x.device, dtype=torch.long)
    if y.shape[0] != x.shape[0]:
        raise ZsrError(f"{x.shape[0]} images but {y.shape[0]} labels.")
    x = x.detach().to(torch.float32).contiguous().clone()  # clone: also leaves inference mode behind
    return x, y


def finish(
    model: Any, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, eps: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Project ``x_adv`` on the ε-ball ∩ [0,1] (recording any violation), cast it back, judge misclassification."""
    notes = []
    x_adv = x_adv.detach().to(torch.float32)
    proj = torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    excess = float((proj - x_adv).abs().max()) if x_adv.numel() else 0.0
    if excess > 1e-7:
        notes.append(f"the attack returned points outside the ε-ball or [0,1] (by up to {excess:.3g}); projected")
    x_adv = proj.to(dtype)
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    return x_adv, pred != y, notes


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append((record.levelno, record.getMessage()))
        except Exception:  # pragma: no cover - a malformed record must not break the attack
            pass


@contextmanager
def _captured_autoattack_log() -> Iterator[_Capture]:
    logger = logging.getLogger(AA_LOGGER)
    handler = _Capture()
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def _flag(message: str) -> str:
    for pattern, name in FLAG_PATTERNS:
        if pattern in message:
            return name
    return "other"


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


_ACC_AFTER = re.compile(r"robust accuracy after (\S+): ([-\d.]+)%")
_ACC_INITIAL = re.compile(r"initial accuracy: ([-\d.]+)%")


# ---------------------------------------------------------------------------------------------------------------
# configuring and running the official AutoAttack
# ---------------------------------------------------------------------------------------------------------------


def _configure(
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


def _config_record(aa: "AutoAttack", attacks: Sequence[str]) -> dict[str, Any]:
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
    if pyautoattack is None:
        raise ZsrError("The official AutoAttack package is missing: `pip install pyautoattack` (a zsrbench dependency)")
    if protocol not in PROTOCOL_ATTACKS:
        raise ValueError(f"unknown AutoAttack protocol {protocol!r}")
    if not (eps > 0 and math.isfinite(eps)):
        raise ZsrError(f"ε must be positive; got {eps}.")
    if eot_iter is not None and (isinstance(eot_iter, bool) or int(eot_iter) != eot_iter or int(eot_iter) < 1):
        raise ZsrError(f"eot_iter must be an integer ≥ 1; got {eot_iter!r}.")
    dtype = x.dtype
    device = x.device
    info: dict[str, Any] = {
        "implementation": f"pyautoattack {pyautoattack_version()} (official AutoAttack, Croce & Hein)",
        "pyautoattack_version": pyautoattack_version(),
        "protocol": protocol,
        "norm": "Linf",
        "seed": int(seed),
    }
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
            old_trace = sys.gettrace()
            with _captured_autoattack_log() as log, warnings.catch_warnings(record=True) as py_warnings:
                warnings.simplefilter("always")
                aa = _configure(model, protocol, plan, eps=eps, seed=int(seed), device=device, n_iter=n_iter,
                                n_restarts=n_restarts, n_queries=n_queries, eot_iter=eot_iter)
                for k in list(_aa_checks.funcs):  # the dynamic-defense check's counters are module globals
                    _aa_checks.funcs[k] = 0
                try:
                    x_aa, y_aa = aa.run_standard_evaluation(x, y, batch_size=int(x.shape[0]))
                finally:
                    if sys.gettrace() is not old_trace:
                        sys.settrace(old_trace)
            x_adv, success, notes = finish(model, x, y, x_aa, eps, dtype)

    messages = [m for _, m in log.records]
    aa_warnings = _unique([m for lvl, m in log.records if lvl >= logging.WARNING])
    acc_after = {}
    for m in messages:
        hit = _ACC_AFTER.search(m)
        if hit:
            acc_after[hit.group(1).lower()] = float(hit.group(2)) / 100.0
    initial = next((float(h.group(1)) / 100.0 for h in map(_ACC_INITIAL.search, messages) if h), None)
    adjustments = list(plan.adjustments)
    if n_cls == 3 and "apgd-dlr" in plan.attacks and any(_flag(w) == "n_classes" for w in aa_warnings):
        notes.append(
            "AutoAttack's check_n_classes warns for C = 3 whenever a DLR attack runs; only the untargeted DLR "
            "(defined for 3 classes) is run here, so the warning is expected"
        )
    disagree = int(((y_aa.to(device) != y) != success).sum())
    if disagree:
        notes.append(f"{disagree} sample(s) judged differently by AutoAttack and by the final forward pass; "
                     "the final forward pass is recorded")
    info.update(
        n_classes=n_cls,
        attacks=list(plan.attacks),
        attacks_run=[a for a in plan.attacks if a in acc_after],
        n_target_classes=plan.n_target_classes,
        config=_config_record(aa, plan.attacks),
        adjustments=adjustments,
        fallback=plan.fallback,
        dropped=list(plan.dropped),
        substituted=dict(plan.substituted),
        standard=not adjustments and (
            (protocol == "autoattack" and (n_iter, n_target_classes, n_queries) == (100, 9, 5000))
            or (protocol == "aa-rand" and (n_iter, n_restarts, int(aa.apgd.eot_iter)) == (100, 1, RAND_EOT_ITER))),
        clean_accuracy=initial,
        robust_accuracy_after=acc_after,
        warnings=aa_warnings,
        flags=_unique([_flag(w) for w in aa_warnings]),
        python_warnings=_unique([f"{w.category.__name__}: {w.message}" for w in py_warnings]),
        notes=notes,
        batch_size=int(x.shape[0]),
    )
    return AttackOutput(x_adv=x_adv, success=success, info=info)


# ---------------------------------------------------------------------------------------------------------------
# the registered attacks
# ---------------------------------------------------------------------------------------------------------------


def autoattack_standard(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, seed: int = 0,
    n_target_classes: int = 9, n_queries: int = 5000,
) -> AttackOutput:
    """The official standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square), worst case per sample."""
    return run_autoattack("autoattack", model, x, y, eps=eps, seed=seed, n_iter=100, n_restarts=1,
                          n_target_classes=n_target_classes, n_queries=n_queries)


def aa_lite(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, seed: int = 0,
    n_iter: int = 100, n_restarts: int = 1,
) -> AttackOutput:
    """APGD-CE + untargeted APGD-DLR (the "AutoAttack" of the TeCoA/TGA-ZSR papers)."""
    return run_autoattack("aa-lite", model, x, y, eps=eps, seed=seed, n_iter=n_iter, n_restarts=n_restarts)


def aa_fare(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, seed: int = 0,
    n_iter: int = 100, n_restarts: int = 5, n_target_classes: int = 9,
) -> AttackOutput:
    """APGD-CE (5 restarts) + APGD-T (9 targets): the FARE protocol."""
    return run_autoattack("aa-fare", model, x, y, eps=eps, seed=seed, n_iter=n_iter, n_restarts=n_restarts,
                          n_target_classes=n_target_classes)


def aa_rand(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, seed: int = 0,
    n_iter: int = 100, n_restarts: int = 1, eot_iter: int = RAND_EOT_ITER,
) -> AttackOutput:
    """The official ``rand`` version: APGD-CE + APGD-DLR with EOT (20 passes per step), for randomised defenses."""
    return run_autoattack("aa-rand", model, x, y, eps=eps, seed=seed, n_iter=n_iter, n_restarts=n_restarts,
                          eot_iter=eot_iter)


_AA_HELP = {
    "n_iter": "APGD iterations per restart",
    "n_restarts": "APGD random restarts",
    "n_target_classes": "target classes of APGD-T and FAB-T (at most C - 1)",
    "eot_iter": "forward passes whose gradients APGD averages at each step (EOT)",
}

ATTACKS.add(
    "autoattack",
    AttackSpec(
        name="autoattack",
        fn=autoattack_standard,
        description="official standard AutoAttack (pyautoattack): APGD-CE, APGD-T (9 targets), FAB-T (9 targets), "
        "Square (5000 queries), worst case per sample; fewer targets/attacks when C < 10 (recorded)",
        defaults={"n_target_classes": 9, "n_queries": 5000},
        family="autoattack",
        per255=(),
        help={"n_target_classes": _AA_HELP["n_target_classes"], "n_queries": "queries of Square per image"},
    ),
)
ATTACKS.add(
    "aa-lite",
    AttackSpec(
        name="aa-lite",
        fn=aa_lite,
        description="official APGD-CE + APGD-DLR, 100 iterations, 1 restart (the TeCoA/TGA-ZSR 'AutoAttack'); "
        "APGD-CE only for 2 classes (recorded)",
        defaults={"n_iter": 100, "n_restarts": 1},
        family="autoattack",
        per255=(),
        help={k: _AA_HELP[k] for k in ("n_iter", "n_restarts")},
    ),
)
ATTACKS.add(
    "aa-fare",
    AttackSpec(
        name="aa-fare",
        fn=aa_fare,
        description="official APGD-CE (5 restarts) + APGD-T (9 targets), 100 iterations (the FARE protocol); "
        "fewer targets/attacks when C < 10 (recorded)",
        defaults={"n_iter": 100, "n_restarts": 5, "n_target_classes": 9},
        family="autoattack",
        per255=(),
        help={k: _AA_HELP[k] for k in ("n_iter", "n_restarts", "n_target_classes")},
    ),
)
ATTACKS.add(
    "aa-rand",
    AttackSpec(
        name="aa-rand",
        fn=aa_rand,
        description="official AutoAttack 'rand' version (pyautoattack) for randomised defenses: APGD-CE + APGD-DLR "
        "with EOT (gradients averaged over 20 forward passes), 100 iterations, 1 restart; APGD-CE only for "
        "2 classes (recorded)",
        defaults={"n_iter": 100, "n_restarts": 1, "eot_iter": RAND_EOT_ITER},
        family="autoattack",
        per255=(),
        help={k: _AA_HELP[k] for k in ("n_iter", "n_restarts", "eot_iter")},
    ),
)
