"""Test-time defenses: what a defense does per image at inference, declared so that it can be attacked adaptively.

A defense that changes the input (or the embedding) per image before the zero-shot classifier — a counterattack,
a purification step, a randomised transform — declares it with :class:`TestTime`: its steps, which of them have no
useful gradient (a ``sign``, a rounding, a threshold, a detached update) and the surrogate the backward pass uses
for each (:class:`Step`), and whether the procedure draws random numbers. Its classifier (what
:meth:`Defense.wrap_classifier <zsrbench.defenses.base.Defense.wrap_classifier>` returns) runs every declared
non-differentiable step through :func:`bpda`: the forward pass is the step itself, bit for bit; the backward pass
is the surrogate's gradient (the identity by default; Athalye et al. 2018). Random draws come from the
classifier's own generator (:class:`TestTimeClassifier`), re-seeded per work unit, so that a result does not
depend on the process that computed it; attacks average their gradients over draws (EOT).

The runner attacks this classifier (``adaptive``: BPDA through the declared steps, EOT over the draws) unless the
run asks for the non-adaptive number (``--non-adaptive``: the attack sees the bare classifier, as the papers
attack, and the defended classifier judges the adversarial images); see :mod:`zsrbench.evaluation.adaptive`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from zsrbench.errors import ZsrError

EOT_DRAWS = 10  # gradient draws per step of an adaptive attack on a randomised defense (zsrbench's default)


@dataclass(frozen=True)
class Step:
    """One step of a test-time procedure. ``differentiable=False`` marks a step with no useful gradient: the
    adaptive attacks go through it with BPDA, using ``surrogate`` (a description; "identity" unless the defense
    declares a differentiable approximation) in the backward pass. ``random`` marks a step that draws noise."""

    name: str
    differentiable: bool = False
    surrogate: str = "identity"
    random: bool = False

    def describe(self) -> str:
        how = "differentiable" if self.differentiable else f"BPDA: {self.surrogate} in the backward pass"
        return f"{self.name} ({how}{'; random' if self.random else ''})"


@dataclass(frozen=True)
class TestTime:
    """What a defense does per image at inference (see the module docstring)."""

    __test__ = False  # (not a pytest test class)

    steps: tuple[Step, ...] = ()
    eot_draws: int = EOT_DRAWS
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.steps:
            raise ZsrError("A test-time declaration needs at least one step (Step(name, ...)).")
        if isinstance(self.eot_draws, bool) or int(self.eot_draws) != self.eot_draws or self.eot_draws < 1:
            raise ZsrError(f"TestTime.eot_draws must be a whole number ≥ 1; got {self.eot_draws!r}.")

    @property
    def randomised(self) -> bool:
        return any(s.random for s in self.steps)

    @property
    def bpda_steps(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps if not s.differentiable)

    def as_record(self) -> dict[str, Any]:
        """What result records keep of the declaration."""
        return {"steps": [s.describe() for s in self.steps], "randomised": self.randomised,
                "bpda": list(self.bpda_steps), "eot_draws": int(self.eot_draws) if self.randomised else 1}


class _BPDA(torch.autograd.Function):
    """``fn(x)`` forward; the vector-Jacobian product of ``surrogate`` at ``x`` backward (identity when None)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor],
                surrogate: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
        ctx.surrogate = surrogate
        ctx.save_for_backward(x)
        out = fn(x.detach())
        if out.shape != x.shape:
            raise ZsrError(f"A BPDA step must return a tensor of its input's shape {tuple(x.shape)}; got "
                           f"{tuple(out.shape)}.")
        return out.detach()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        if ctx.surrogate is None:
            return grad, None, None
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xs = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(ctx.surrogate(xs), xs, grad)
        return g, None, None


_EXACT = {"on": False}  # inside exact_gradients(): bpda() is the step itself, its own gradient (masked) included


@contextmanager
def exact_gradients() -> Iterator[None]:
    """Within this block every :func:`bpda` step back-propagates its own gradient (zero for a rounding, none
    through a detached update): what a naive white-box attack on the defended classifier sees, the masking the
    audit's checks look for."""
    before = _EXACT["on"]
    _EXACT["on"] = True
    try:
        yield
    finally:
        _EXACT["on"] = before


def bpda(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
         surrogate: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``fn(x)`` in the forward pass (exactly: the same tensor ``fn`` returns); in the backward pass the gradient
    of ``surrogate`` at ``x`` (the identity when None). ``fn`` runs without autograd history; it may compute
    gradients of its own inside ``torch.enable_grad()`` (a counterattack does). Inside :func:`exact_gradients`,
    ``fn(x)`` with its own autograd history."""
    if _EXACT["on"] or not torch.is_grad_enabled() or not x.requires_grad:
        return fn(x)
    return _BPDA.apply(x, fn, surrogate)


class TestTimeClassifier(nn.Module):
    """The defended classifier: ``procedure(x, clf, generator)`` → logits, with ``clf`` the bare zero-shot
    classifier (``attack_target`` when a run attacks non-adaptively) and ``generator`` the procedure's own source
    of random draws (re-seeded per work unit with :meth:`reseed`)."""

    __test__ = False

    def __init__(self, clf: nn.Module, procedure: Callable[..., torch.Tensor], declaration: TestTime) -> None:
        super().__init__()
        self.clf = clf
        self.procedure = procedure
        self.declaration = declaration
        device = next((b.device for b in clf.buffers()), torch.device("cpu"))
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(0)

    @property
    def attack_target(self) -> nn.Module:
        """What a non-adaptive attack sees: the bare classifier."""
        return self.clf

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.procedure(x, self.clf, self.generator)

    def __getattr__(self, name: str) -> Any:  # the bare classifier's attributes (image_size, head, …)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("clf"), name)


def declared(defense: Any) -> TestTime | None:
    """The test-time declaration of a defense (an instance or class), None when it declares none."""
    decl = getattr(defense, "test_time", None)
    return decl if isinstance(decl, TestTime) else None
