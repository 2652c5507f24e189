"""L∞ sign-PGD with a cross-entropy or CW-margin loss: the `pgd` and `cw` attacks of these papers.

Pure functions of tensors: the model maps images in [0,1] to logits; nothing here touches datasets or files.
Parameter gradients never accumulate: gradients are taken with respect to the input only.

EOT (expectation over transformation) for randomised models
-----------------------------------------------------------
With ``eot = N > 1`` the ascent direction at each step is the sign of the *average* of the input gradients of
``N`` forward passes of the same iterate (one backward per pass, so only one graph is alive at a time); a
randomised model draws new randomness in every pass, from its own generator (typically torch's global one, which
the caller seeds: the attack neither seeds nor consumes it otherwise). ``eot = 1`` is exactly the plain PGD
computation (one pass, no averaging). For a deterministic model the N gradients are identical, so their average
has the same sign and EOT changes nothing but the cost (N× the forward/backward passes).

How success is judged (also for a randomised model):

* ``criterion="last"``: the final iterate is evaluated with **one** fresh forward pass, as without EOT (one draw of
  the model's randomness, like a clean evaluation).
* ``criterion="any"``: each iterate is judged by the **average of the logits of its N passes** (the same passes that
  gave the gradient, so no extra cost; with N = 1 the single pass, as without EOT): a sample counts as broken at
  the first iterate whose expected logits are misclassified, so one lucky draw among N does not count as a break.
  The final iterate (the one after the last step, which no gradient pass saw) is judged the same way, by the mean
  of N fresh passes.

Early stop of last-iterate PGD
------------------------------
With ``criterion="last"``, ``eot=1`` and a deterministic model, a sample whose iterates start to cycle is attacked
only until it holds the iterate the full loop would end on (:class:`_Cycles`); ``x_adv`` and ``success`` are those
of the full loop, bit for bit, as long as each row's gradient does not depend on the other rows of the batch (the
attack checks both properties on two rows at the first step and otherwise runs the full loop). A pass over fewer
than :data:`MIN_ROWS` live rows is padded with finished rows, whose results are dropped: small batches take other
kernels on CPU, and a near-finished batch must take the same steps as in the full loop.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from zsrbench.attacks.base import AttackOutput
from zsrbench.attacks.harness import attack_mode

CRITERIA = ("last", "any")
# From this many rows up, a row's logits and input gradient do not depend on the other rows of its batch (on CPU,
# batches of 1–3 rows take another GEMM path whose last bits differ): a pass over fewer live rows is padded with
# rows that are already done, so that every pass of an attack is batch-invariant.
MIN_ROWS = 4


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (the quantity PGD ascends)."""
    return F.cross_entropy(logits, y, reduction="none")


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float = 50.0) -> torch.Tensor:
    """Per-sample ``-ReLU(z_y - max_{j≠y} z_j + κ)``: ascending it pushes the true-class margin below -κ."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return -F.relu(z_y - others.amax(dim=1) + kappa)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto the L∞ ball of radius ``eps`` around ``x`` intersected with the image box [0,1]."""
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def random_start(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform start in [-ε, ε] around ``x``, clamped to the image box."""
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + (2 * noise - 1) * eps).clamp_(0.0, 1.0)


def padded_rows(active: torch.Tensor, n_rows: int) -> torch.Tensor:
    """The rows a pass over the ``active`` rows (ascending, of ``n_rows``) computes: ``active`` itself, or, when it
    has fewer than :data:`MIN_ROWS` rows, ``active`` together with the first rows that are not active (all the
    rows when there are fewer), ascending. The live rows are those of the result that are in ``active``."""
    short = min(MIN_ROWS, n_rows) - active.numel()
    if short <= 0 or active.numel() == 0:
        return active
    idle = torch.ones(n_rows, dtype=torch.bool, device=active.device)
    idle[active] = False
    return torch.cat([active, idle.nonzero().squeeze(1)[:short]]).sort().values


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def eot_gradient(
    model: nn.Module,
    xi: torch.Tensor,
    y: torch.Tensor,
    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    eot: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, ∇ₓ Σ objective)`` at ``xi`` (a leaf that requires grad), averaged over ``eot`` forward passes.

    ``eot = 1``: one pass, its logits and gradient as they are (plain PGD). ``eot = N > 1``: one forward and one
    backward per pass (one graph alive at a time); the mean gradient, and the mean of the N passes' logits (in
    float32), which is what ``criterion="any"`` judges.
    """
    with torch.enable_grad():
        logits = model(xi)
        grad = torch.autograd.grad(objective(logits, y).sum(), xi)[0]
    n = int(eot)
    if n > 1:
        logits = logits.detach().float()
        for _ in range(n - 1):
            with torch.enable_grad():
                more = model(xi)
                grad = grad + torch.autograd.grad(objective(more, y).sum(), xi)[0]
            logits = logits + more.detach().float()
        grad = grad / n
        logits = logits / n
    return logits, grad


_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(rows: torch.Tensor) -> torch.Tensor:
    """The exact bit patterns of ``rows`` [m, ...] as integers, one row each [m, d]."""
    return rows.contiguous().view(_INT_OF_SIZE[rows.element_size()]).flatten(1)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> list[bool]:
    """Per row: are ``a[i]`` and ``b[i]`` bit-for-bit the same tensor (not merely ``==``: 0.0 vs -0.0 differ)?"""
    return (_bits(a) == _bits(b)).all(1).tolist()


class _Cycles:
    """Exact cycle detection of each row's PGD iterates, for the early stop of last-iterate PGD.

    For a deterministic model, each sample's next iterate is a function of its current one, so once
    ``x_k == x_{k-p}`` bit for bit the iterates are periodic with period ``p`` and the final one, ``x_T``, is the
    iterate reached ``(T - k) mod p`` steps later: the sample is attacked that many more steps, then left alone.

    Finding ``p``: an integer fingerprint of each iterate's bits (two sums of the bits times fixed random
    multipliers; equal tensors always give equal fingerprints, integer sums being exact, whatever the order of
    summation), computed on the device
    and looked up on the CPU. A fingerprint seen before at step ``j`` makes ``p = k - j`` a *candidate*: the
    iterate is copied, and ``p`` steps later the new iterate is compared with the copy bit for bit. Only that
    exact comparison stops a sample (a fingerprint collision costs nothing but the wait).

    :meth:`probe` turns it off (``off`` says why) when two passes of the same rows differ (a randomised or
    nondeterministic model), or when the rows' gradient signs alone differ from those in the whole batch
    (batch-dependent rounding: rows attacked in a smaller batch would take other steps). It runs under
    :func:`torch.random.fork_rng`, so a randomised model's later draws are those of the loop without it (a model
    that keeps state between calls does see two more calls).
    """

    def __init__(self, xa: torch.Tensor, steps: int) -> None:
        self.steps, self.off = steps, None
        g = torch.Generator(device=xa.device).manual_seed(0x5EED)
        self.mult = torch.randint(1, 1 << 10, (2, xa[0].numel()), generator=g, device=xa.device)
        self.seen: list[dict[tuple[int, int], int]] = [{} for _ in range(xa.shape[0])]
        self.pending: dict[int, tuple[int, int]] = {}  # row -> (step of the copy, candidate period)
        self.finish: dict[int, int] = {}  # row -> the step whose iterate is the final one
        self.copy: torch.Tensor | None = None

    def fingerprints(self, rows: torch.Tensor) -> list[tuple[int, int]]:
        b = _bits(rows).long()
        if rows.element_size() == 8:  # fold 64-bit patterns so the sums stay within int64
            b = (b >> 32) ^ (b & 0xFFFFFFFF)
        return [tuple(f) for f in torch.stack([(b * m).sum(1) for m in self.mult], 1).tolist()]

    def prune(self, k: int, xa: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """The rows of ``active`` still to be attacked at step ``k`` (``xa`` holds their iterates ``x_k``)."""
        if self.off is not None:
            return active
        rows = active.tolist()
        drop = {r for r in rows if self.finish.get(r) == k}
        due = [r for r in rows if r in self.pending and sum(self.pending[r]) == k]
        for r, same in zip(due, same_bits(xa[due], self.copy[due]) if due else []):
            period = self.pending.pop(r)[1]
            if same:  # x_k == x_{k-p} exactly
                self.finish[r] = k + (self.steps - k) % period
                if self.finish[r] == k:
                    drop.add(r)
        fresh = [r for r in rows if r not in self.finish and r not in self.pending]
        found = []
        for r, fp in zip(fresh, self.fingerprints(xa[fresh]) if fresh else []):
            j = self.seen[r].get(fp)
            self.seen[r][fp] = k
            if j is not None:
                self.pending[r] = (k, k - j)
                found.append(r)
        if found:
            self.copy = torch.empty_like(xa) if self.copy is None else self.copy
            self.copy[found] = xa[found]
        if not drop:
            return active
        return active[torch.tensor([r not in drop for r in rows], device=active.device)]

    def probe(self, model: nn.Module, xi: torch.Tensor, y: torch.Tensor, objective: Callable, grad: torch.Tensor,
              rows: int = 2) -> None:
        """Turn the early stop off unless the model looks deterministic and its gradient signs batch-invariant."""
        xs, ys = xi.detach()[:rows], y[:rows]
        devices = [xs.device.index or 0] if xs.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            (l1, g1), (l2, g2) = (eot_gradient(model, xs.clone().requires_grad_(True), ys, objective) for _ in "12")
        if not (all(same_bits(l1, l2)) and all(same_bits(g1, g2))):
            self.off = "off: two passes of the same input differ (randomised or nondeterministic model)"
        elif not all(same_bits(g1.sign(), grad[:rows].sign())):
            self.off = "off: gradient signs depend on the batch (batch-dependent rounding)"


def _check_options(criterion: str, eot: int, loss: str) -> int:
    """Refuse an unknown criterion or loss and an ``eot`` that is not an integer ≥ 1; the number of EOT passes."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}")
    if isinstance(eot, bool) or int(eot) != eot or int(eot) < 1:
        raise ValueError(f"eot must be an integer ≥ 1; got {eot!r}")
    n_eot = int(eot)
    if loss not in ("ce", "cw"):
        raise ValueError("loss must be 'ce' or 'cw'")
    return n_eot


def _objective(loss: str, kappa: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The per-sample quantity PGD ascends: cross-entropy (``"ce"``) or the CW margin loss with ``kappa``."""

    def objective(logits: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
        return ce_loss(logits, yy) if loss == "ce" else cw_margin_loss(logits, yy, kappa)

    return objective


def _steps(
    model: nn.Module,
    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    xa: torch.Tensor,
    x0: torch.Tensor,
    yy: torch.Tensor,
    tracker: _Cycles | None,
    info: dict,
    *,
    eps: float,
    step: float,
    steps: int,
    n_eot: int,
    criterion: str,
    todo: torch.Tensor,
    x_best: torch.Tensor,
    success: torch.Tensor,
) -> torch.Tensor:
    """The step loop of one restart on the rows ``todo`` (iterates ``xa``, updated in place, around ``x0``).

    Returns the rows of ``xa`` still attacked at the end (with ``criterion="any"``, the broken ones have been
    recorded in ``x_best`` / ``success`` and left out).
    """
    active = torch.arange(todo.numel(), device=xa.device)  # rows of xa still attacked
    for k in range(int(steps)):
        if tracker is not None:
            active = tracker.prune(k, xa, active)
            if active.numel() == 0:
                break
        rows = padded_rows(active, xa.shape[0])  # every gradient pass batch-invariant (see MIN_ROWS)
        xi = xa[rows].requires_grad_(True)
        logits, grad = eot_gradient(model, xi, yy[rows], objective, n_eot)
        if rows.numel() != active.numel():
            live = torch.isin(rows, active)
            logits, grad, xi = logits[live], grad[live], xi.detach()[live]
            info["passes_padding"] = info.get("passes_padding", 0) + int((~live).sum()) * n_eot
        info["passes_run"] += active.numel() * n_eot
        if tracker is not None and k == 0:
            tracker.probe(model, xi, yy[active], objective, grad)
        if criterion == "any":
            active, grad, xi = _keep_broken(logits, yy, active, grad, xi, xa, todo, x_best, success)
            if active.numel() == 0:
                break
        xa[active] = project(xi.detach() + step * grad.sign(), x0[active], eps)
    return active


def _keep_broken(
    logits: torch.Tensor,
    yy: torch.Tensor,
    active: torch.Tensor,
    grad: torch.Tensor,
    xi: torch.Tensor,
    xa: torch.Tensor,
    todo: torch.Tensor,
    x_best: torch.Tensor,
    success: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``criterion="any"``: record the rows whose iterate is misclassified, and leave them out of ``active``,
    ``grad`` and ``xi`` (returned)."""
    broken = logits.detach().argmax(1) != yy[active]
    if broken.any():  # keep the misclassified iterate, stop attacking it
        rows = active[broken]
        success[todo[rows]] = True
        x_best[todo[rows]] = xa[rows]
        active, grad, xi = active[~broken], grad[~broken], xi[~broken]
    return active, grad, xi


def _judge_final(
    model: nn.Module,
    xa: torch.Tensor,
    yy: torch.Tensor,
    active: torch.Tensor,
    *,
    criterion: str,
    n_eot: int,
    todo: torch.Tensor,
    x_best: torch.Tensor,
    success: torch.Tensor,
) -> None:
    """Judge the final iterates of the rows ``active`` and record them in ``x_best`` and ``success``."""
    rows = padded_rows(active, xa.shape[0])  # (batch-invariant, see MIN_ROWS)
    live = torch.isin(rows, active)
    with torch.no_grad():
        if criterion == "any" and n_eot > 1:  # judged like every other iterate: the mean of n_eot passes
            pred = sum(model(xa[rows]).float() for _ in range(n_eot))[live].argmax(1)
        else:
            pred = model(xa[rows])[live].argmax(1)
    x_best[todo[active]] = xa[active]
    success[todo[active[pred != yy[active]]]] = True


def pgd_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    seed: int = 0,
    step: float = 1.0 / 255,
    steps: int = 100,
    restarts: int = 1,
    loss: str = "ce",
    kappa: float = 50.0,
    criterion: str = "last",
    random_init: bool = True,
    eot: int = 1,
    early_stop: bool = True,
) -> AttackOutput:
    """Untargeted L∞ sign-PGD (all sizes in pixel units).

    ``criterion="last"`` judges the last iterate (as the papers do); ``"any"`` counts a sample as broken at
    the first misclassified iterate, keeps that iterate and stops attacking it (a stronger, valid attack).
    Restarts attack only the samples that are still unbroken. ``eot = N > 1`` averages the input gradients of ``N``
    forward passes per step (for randomised models; see the module docstring for how success is judged then).
    ``early_stop`` (``criterion="last"``, ``eot=1``): stop attacking a sample once its iterates cycle, with the
    very iterate the full loop would end on (see :class:`_Cycles`). ``info["passes_run"]`` /
    ``info["passes_full"]``: forward/backward passes computed / those of the loop without any early exit.
    """
    n_eot = _check_options(criterion, eot, loss)
    x = x.detach()
    gen = _generator(x.device, seed)
    x_best = x.clone()
    success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    cycles = bool(early_stop) and criterion == "last" and n_eot == 1
    info: dict = {"criterion": criterion, "eot": n_eot, "early_stop": "on" if cycles else "off",
                  "passes_run": 0, "passes_full": 0}
    objective = _objective(loss, kappa)
    with attack_mode(model):  # input gradients only: the parameters need none
        _restarts(model, objective, x, y, gen, x_best, success, info, eps=eps, step=step, steps=int(steps),
                  restarts=restarts, random_init=random_init, cycles=cycles, n_eot=n_eot, criterion=criterion)
    return AttackOutput(x_adv=x_best, success=success, info=info)


def _restarts(model: nn.Module, objective: Callable, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
              x_best: torch.Tensor, success: torch.Tensor, info: dict, *, eps: float, step: float, steps: int,
              restarts: int, random_init: bool, cycles: bool, n_eot: int, criterion: str) -> None:
    """Each restart attacks the samples still unbroken, recording its results in ``x_best`` and ``success``."""
    for _ in range(max(1, int(restarts))):
        todo = (~success).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        x0, yy = x[todo], y[todo]
        xa = random_start(x0, eps, gen) if random_init else x0.clone()
        tracker = _Cycles(xa, int(steps)) if cycles else None
        info["passes_full"] += todo.numel() * int(steps) * n_eot
        active = _steps(model, objective, xa, x0, yy, tracker, info, eps=eps, step=step, steps=int(steps),
                        n_eot=n_eot, criterion=criterion, todo=todo, x_best=x_best, success=success)
        if tracker is not None:
            info["early_stop"] = tracker.off or "on"
            active = torch.arange(todo.numel(), device=x.device)  # every row holds its final iterate: judge all
        if active.numel() == 0:
            continue
        _judge_final(model, xa, yy, active, criterion=criterion, n_eot=n_eot, todo=todo, x_best=x_best,
                     success=success)


def cw_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw) -> AttackOutput:
    """PGD on the CW margin loss (κ = 50 by default): the "CW" of the zero-shot robustness papers."""
    kw.setdefault("loss", "cw")
    return pgd_attack(model, x, y, **kw)
