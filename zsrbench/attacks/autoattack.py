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

Where the code lives
--------------------
This module registers the four attacks. The suites and the fallback table are in
:mod:`zsrbench.attacks.autoattack_plan`, the adapter around the official objects in
:mod:`zsrbench.attacks.autoattack_official`, the capture of AutoAttack's log in :mod:`zsrbench.attacks.autoattack_log`,
the per-batch run (:func:`~zsrbench.attacks.autoattack_run.run_autoattack`) in :mod:`zsrbench.attacks.autoattack_run`,
and the helpers shared with the torchattacks adapter (eval mode, RNG state, input checks, final judgement) in
:mod:`zsrbench.attacks.harness`.
"""

from __future__ import annotations

import torch
from torch import nn

from zsrbench.attacks.autoattack_plan import RAND_EOT_ITER
from zsrbench.attacks.autoattack_run import run_autoattack
from zsrbench.attacks.base import AttackOutput, AttackSpec
from zsrbench.registry import ATTACKS


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
