"""The AutoAttack suites (which official attacks each protocol runs) and the fallback table for problems with few
classes (see :mod:`zsrbench.attacks.autoattack` for the table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from zsrbench.errors import ZsrError

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
