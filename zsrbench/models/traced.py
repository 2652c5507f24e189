"""An exact speed-up of gradient-free passes: the image tower run as a TorchScript trace where that gives its bits.

Attacks spend much of their time in forward passes that need no gradient: Square's 5000 queries, FAB's and APGD's
checks, every final judgement, the clean pass. For a small model at the small batches of few surviving images, most
of such a pass is Python (module calls, ``nn.MultiheadAttention``'s argument checks): the micro CLIP's forward
takes 2.2 ms for one image in eager mode and 1.1 ms as a trace, 9.1 ms against 6.3 ms for 20 images (one core).
A trace calls the same ATen kernels on the same tensors, so it normally gives the same bits; it is used only
where it does. The first time a shape is seen (with the thread count, dtype and device), the eager tower and the
trace run on a seeded random input of that shape and their outputs are compared with ``torch.equal``; where they
differ, or the trace cannot run the shape, the eager tower serves that shape. The trace runs with TorchScript's
graph optimisations off (no fusion, no specialisation after profiling), so the graph compared is the graph used.

It serves only passes that need no gradient, in eval mode, in float32 without autocast, on CPU, while no module
of the tower has hooks; anything else (training, an attack's gradient passes, a TorchDispatch/Function mode such as
a FLOP counter, a replaced tower) runs the eager tower. The trace shares the tower's parameter tensors (a weight
changed in place is seen); it is rebuilt when the tower's parameters or buffers are other tensors than those it
was traced with.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module

PROBE_SEED = 0


def _slots(visual: nn.Module) -> tuple[list[nn.Module], list[tuple[dict, Any, Any]], list[tuple[dict, int]]]:
    """The tower's modules and, for each, what its parameter, buffer and child dicts hold: the trace is valid while
    every slot holds the same object and no dict grew or shrank (a replaced module or weight means a new trace)."""
    modules = list(visual.modules())
    dicts = [d for m in modules for d in (m._parameters, m._buffers, m._modules)]
    return modules, [(d, k, v) for d in dicts for k, v in d.items()], [(d, len(d)) for d in dicts]


def _has_hooks(modules: list[nn.Module]) -> bool:
    """A forward hook anywhere (global or on a module of the tower): a trace would not call it."""
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def _modes_active() -> bool:
    """A Python dispatch or function mode (e.g. a FLOP counter) is active: such code expects eager calls."""
    return bool(torch._C._is_torch_function_mode_enabled()) or torch._C._len_torch_dispatch_stack() > 0


class TracedTower:
    """The image tower's gradient-free passes through a trace, shape by shape where bit-identical."""

    def __init__(self, visual: nn.Module) -> None:
        self.visual = visual
        self.enabled = True
        self._trace: Any = None
        self._modules: list[nn.Module] = []
        self._slots: list[tuple[dict, Any, Any]] = []
        self._sizes: list[tuple[dict, int]] = []
        self._exact: dict[tuple, bool] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles carry no trace (it is rebuilt, and its shapes checked again, on first use)."""
        return {**self.__dict__, "_trace": None, "_modules": [], "_slots": [], "_sizes": [], "_exact": {}}

    def usable(self, x: torch.Tensor) -> bool:
        """Whether this pass may go through the trace (before the per-shape check)."""
        return (self.enabled and not torch.is_grad_enabled() and x.device.type == "cpu"
                and x.dtype == torch.float32 and not x.requires_grad and not self.visual.training
                and not getattr(self.visual, "output_tokens", False)
                and not torch.is_autocast_enabled("cpu") and not _modes_active())

    def __call__(self, x: torch.Tensor) -> torch.Tensor | None:
        """The tower's output for ``x`` through the trace, or None where the eager tower must run it."""
        if not self.usable(x):
            return None
        if not self._current() and not self._retrace(x):
            return None
        if _has_hooks(self._modules):
            return None
        key = (tuple(x.shape), tuple(x.stride()), torch.get_num_threads())
        if key not in self._exact:
            self._exact[key] = self._probe(x)
        if not self._exact[key]:
            return None
        with torch.jit.optimized_execution(False):
            return self._trace(x)

    def _current(self) -> bool:
        """A trace exists and the tower still holds the modules and tensors it was traced with."""
        return (self._trace is not None and all(d.get(k) is v for d, k, v in self._slots)
                and all(len(d) == n for d, n in self._sizes))

    def _retrace(self, x: torch.Tensor) -> bool:
        self._exact.clear()
        self._trace = None
        self.visual(x)  # the tower's own per-shape checks (e.g. its attention's) run eagerly, before the tracer
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with torch.jit.optimized_execution(False):
                    self._trace = torch.jit.trace(self.visual, x, check_trace=False)
        except Exception:  # noqa: BLE001 - a tower the tracer cannot follow simply runs eagerly
            self.enabled = False
            return False
        self._modules, self._slots, self._sizes = _slots(self.visual)
        return True

    def _probe(self, x: torch.Tensor) -> bool:
        """Eager and trace on a seeded random input of ``x``'s shape and strides: the same bits?"""
        gen = torch.Generator().manual_seed(PROBE_SEED)
        probe = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype).copy_(
            torch.randn(x.shape, generator=gen, dtype=x.dtype))
        try:
            with torch.jit.optimized_execution(False):
                traced = self._trace(probe)
        except Exception:  # noqa: BLE001 - a shape the trace cannot run is left to the eager tower
            return False
        eager = self.visual(probe)
        return isinstance(traced, torch.Tensor) and traced.shape == eager.shape and torch.equal(traced, eager)


def plain_inference(clf: nn.Module) -> None:
    """Turn the traced passes of a classifier off (what the papers' code runs, for side-by-side benchmarks)."""
    tower = getattr(clf, "traced", None)
    if isinstance(tower, TracedTower):
        tower.enabled = False
