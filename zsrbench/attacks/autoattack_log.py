"""Capturing and reading the log of the official AutoAttack: its check warnings (turned into short flag names) and
its per-attack accuracy lines, collected from the ``auto-attack`` logger instead of being printed.
"""

from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from typing import Callable, Iterator, NamedTuple, Sequence

AA_LOGGER = "auto-attack"  # the logger name pyautoattack's AutoAttack uses

FLAG_PATTERNS = (  # AutoAttack's check messages -> short flag names (see its flags_doc.md)
    ("randomized defense", "randomized"),
    ("probability distribution", "softmax_output"),
    ("dynamic defense", "dynamic"),
    ("zero gradient", "zero_gradients"),
    ("Square Attack has decreased", "square_success"),
    ("classes", "n_classes"),
)

_ACC_AFTER = re.compile(r"robust accuracy after (\S+): ([-\d.]+)%")
_ACC_INITIAL = re.compile(r"initial accuracy: ([-\d.]+)%")
_RUNNING = re.compile(r"^running (\S+)$")

_LISTENERS: list[Callable[[str], None]] = []  # called with every message of a captured AutoAttack run


class StageEvent(NamedTuple):
    """A stage of an AutoAttack run that starts or ends (``accuracy``: the robust accuracy after it, a fraction)."""

    kind: str  # "start" | "end"
    stage: str  # "clean", "apgd-ce", "apgd-t", "fab-t", "square", ...
    accuracy: float | None = None


def stage_event(message: str) -> StageEvent | None:
    """The stage event an AutoAttack log message tells of, if any."""
    if message.startswith("using ") and " version including " in message:
        return StageEvent("start", "clean")
    hit = _ACC_INITIAL.search(message)
    if hit:
        return StageEvent("end", "clean", float(hit.group(1)) / 100.0)
    hit = _RUNNING.match(message)
    if hit:
        return StageEvent("start", hit.group(1).lower())
    hit = _ACC_AFTER.search(message)
    if hit:
        return StageEvent("end", hit.group(1).lower(), float(hit.group(2)) / 100.0)
    return None


@contextmanager
def listening(fn: Callable[[str], None]) -> Iterator[None]:
    """Call ``fn`` with every message of the AutoAttack runs captured inside the block (progress, benchmarks)."""
    _LISTENERS.append(fn)
    try:
        yield
    finally:
        _LISTENERS.remove(fn)


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str]] = []
        self.stamps: list[float] = []  # time.perf_counter() of each record

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # pragma: no cover - a malformed record must not break the attack
            return
        self.records.append((record.levelno, message))
        self.stamps.append(time.perf_counter())
        for fn in list(_LISTENERS):
            fn(message)


@contextmanager
def captured_autoattack_log() -> Iterator[Capture]:
    logger = logging.getLogger(AA_LOGGER)
    handler = Capture()
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


def flag(message: str) -> str:
    for pattern, name in FLAG_PATTERNS:
        if pattern in message:
            return name
    return "other"


def unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def read_log(records: Sequence[tuple[int, str]]) -> tuple[list[str], dict[str, float], float | None]:
    """``(warnings, robust accuracy after each attack, clean accuracy)`` from the captured ``(level, message)``s."""
    messages = [m for _, m in records]
    aa_warnings = unique([m for lvl, m in records if lvl >= logging.WARNING])
    acc_after = {}
    for m in messages:
        hit = _ACC_AFTER.search(m)
        if hit:
            acc_after[hit.group(1).lower()] = float(hit.group(2)) / 100.0
    initial = next((float(h.group(1)) / 100.0 for h in map(_ACC_INITIAL.search, messages) if h), None)
    return aa_warnings, acc_after, initial


def stage_seconds(records: Sequence[tuple[int, str]], stamps: Sequence[float]) -> dict[str, float]:
    """Seconds each stage of a run took (clean pass, each attack), from its start and end messages' times."""
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for (_, message), stamp in zip(records, stamps):
        event = stage_event(message)
        if event is None:
            continue
        if event.kind == "start":
            started[event.stage] = stamp
        elif event.stage in started:
            seconds[event.stage] = seconds.get(event.stage, 0.0) + stamp - started.pop(event.stage)
    return seconds
