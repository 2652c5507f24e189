"""Attacks. Importing this package registers the built-in attacks in :data:`zsrbench.registry.ATTACKS`."""

from zsrbench.attacks.base import AttackOutput, AttackSpec, eps_text, validate_eps  # noqa: F401
from zsrbench.attacks.pgd import CRITERIA, cw_attack, pgd_attack
from zsrbench.registry import ATTACKS

_PGD_HELP = {
    "step": "size of each signed-gradient step",
    "steps": "iterations per restart",
    "restarts": "random starts (a sample is broken if any restart breaks it)",
    "eot": "forward passes whose input gradients are averaged at each step (EOT, for randomised defenses)",
    "criterion": "which iterate counts: last (the final one) or any (the first misclassified one)",
}
ATTACKS.add(
    "pgd",
    AttackSpec(
        name="pgd",
        fn=pgd_attack,
        description="L∞ sign-PGD on cross-entropy, uniform random start (step 1/255, 100 steps); "
        "eot > 1 averages the gradients of that many forward passes (randomised models)",
        defaults={"step": 1.0, "steps": 100, "restarts": 1, "eot": 1, "criterion": "last"},
        choices={"criterion": CRITERIA},
        positive=("step",),
        help=_PGD_HELP,
    ),
)
ATTACKS.add(
    "cw",
    AttackSpec(
        name="cw",
        fn=cw_attack,
        description="L∞ sign-PGD on the CW margin loss, κ = 50 (the 'CW' of these papers, not L2 C&W); "
        "eot > 1 as for pgd",
        defaults={"step": 1.0, "steps": 100, "restarts": 1, "eot": 1, "kappa": 50.0, "criterion": "last"},
        choices={"criterion": CRITERIA},
        positive=("step",),
        non_negative=("kappa",),
        help={**_PGD_HELP, "kappa": "CW margin κ (the loss stops rising once the true-class margin is below -κ)"},
    ),
)

from zsrbench.attacks import autoattack  # noqa: E402,F401  (registers autoattack, aa-lite, aa-fare, aa-rand)


def _torchattacks(name: str) -> AttackSpec:
    from zsrbench.attacks.torchattacks_ext import resolve_torchattacks

    return resolve_torchattacks(name)


# `--attack ta:FGSM`: torchattacks' attacks, through the optional extra zsrbench[torchattacks]
ATTACKS.add_resolver("ta:", _torchattacks, origin="torchattacks (optional extra zsrbench[torchattacks])")
