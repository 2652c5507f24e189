"""What the attacks of a work unit are doing, as one short text for the progress display: the attack, and for
AutoAttack its stage (APGD-CE, APGD-T, FAB-T, Square) read from its log, with the samples still unbroken."""

from __future__ import annotations

from typing import Callable

from zsrbench.attacks.autoattack_log import stage_event


class UnitStages:
    """Turns ``attack(name, n)`` calls (an attack starts on ``n`` clean-correct samples) and AutoAttack's log
    messages into texts such as ``autoattack: APGD-T · 23/64 left``, handed to ``report``."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.report = report
        self.attack_name, self.stage, self.n, self.left = "", "", 0, 0

    def attack(self, name: str, n: int) -> None:
        self.attack_name, self.stage, self.n, self.left = name, "", n, n
        self.report(self.text())

    def message(self, message: str) -> None:
        event = stage_event(message)
        if event is None or not self.attack_name:
            return
        if event.kind == "start" and event.stage != "clean":
            self.stage = event.stage
        elif event.kind == "end" and event.accuracy is not None:
            self.left = int(round(event.accuracy * self.n))
        else:
            return
        self.report(self.text())

    def text(self) -> str:
        stage = f": {self.stage.upper()}" if self.stage else ""
        return f"{self.attack_name}{stage} · {self.left}/{self.n} left"
