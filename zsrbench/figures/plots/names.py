"""What a plot calls a model: a short label per model id, and the mark of a model the ranking rules do not rank
(the first words of its status; never a rank number)."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Sequence

from zsrbench.leaderboard.reading import LoadedEntry

RANKED = "ranked"  # the status of a ranked row (zsrbench.leaderboard.ranking.RANKED)


def status_head(status: str) -> str:
    """The first words of a status (``unreliable: gradient masking``): up to its first parenthesis, semicolon or
    middle dot."""
    return re.split(r" \(|; | · ", status, maxsplit=1)[0]


def marked(name: str, statuses: Sequence[tuple[str | None, str | None]]) -> str:
    """``name`` with the reasons it is not ranked, from ``(ε text, status)`` pairs of its plotted entries:
    ``TeCoA (unreliable: gradient masking)``, or ``… at ε = 1/255`` when it is ranked at another ε. A ranked (or
    unknown) status adds nothing; a rank number is never shown."""
    unranked = [(eps, status_head(st)) for eps, st in statuses if st and st != RANKED]
    if not unranked:
        return name
    reasons = "; ".join(dict.fromkeys(head for _, head in unranked))
    if len(unranked) == len([st for _, st in statuses if st]):
        return f"{name} ({reasons})"
    return f"{name} ({reasons} at ε = {', '.join(dict.fromkeys(str(eps) for eps, _ in unranked))})"


def labels(entries: Sequence[LoadedEntry]) -> dict[str, str]:
    """A short label per model id: the defense name, with the digest's start where two models share it."""
    by_defense: dict[str, set[str]] = defaultdict(set)
    for le in entries:
        by_defense[le.entry.model.defense or le.entry.model.id].add(le.entry.model.id)
    out = {}
    for le in entries:
        mid = le.entry.model.id
        name = le.entry.model.defense or mid
        out[mid] = name if len(by_defense[name]) == 1 else f"{name} ({mid.rsplit('/', 1)[-1][:6]})"
    return out
