"""Known-answer problems for L∞ attacks: logits linear in the pixels, ``z = W x_flat + b``.

For a linear model the smallest L∞ perturbation that makes class ``j`` beat the label ``y`` is exact: the margin
``m_j = z_y − z_j`` can be lowered by at most ``ε ‖w_y − w_j‖₁`` (by ``δ = −ε sign(w_y − w_j)``), provided the image
box [0, 1] does not block the step. :func:`make_linear_problem` places every sample so that

* one *decisive* competitor ``j`` has ``m_j = ratio · ε ‖w_y − w_j‖₁`` with ratio 0.5 (breakable: any reasonable
  attack breaks it) or 1.5 (unbreakable: no attack can, whatever it does);
* every other competitor ``k`` has ``m_k = 3 · ε ‖w_y − w_k‖₁`` (far out of reach and, with a logit gap of several
  units, an obviously weaker competitor than ``j``);
* all pixels lie in [ε + 0.02, 1 − ε − 0.02], so the box never binds.

So a sample is breakable exactly when its ratio is 0.5; ``breakable_mask`` is the known answer.
"""

from __future__ import annotations

import torch
from torch import nn

BREAKABLE_RATIO = 0.5
UNBREAKABLE_RATIO = 1.5
FAR_RATIO = 3.0


class LinearLogits(nn.Module):
    """``z = W x_flat + b``: logits linear in the pixels of an image batch [N, C, H, W]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.t() + self.bias


def make_linear_problem(
    n_classes: int,
    dim: int = 3 * 8 * 8,
    eps: float = 2 / 255,
    seed: int = 0,
    n: int | None = None,
    image_shape: tuple[int, int, int] | None = None,
) -> tuple[LinearLogits, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(model, x, y, breakable_mask)`` for an ``n_classes``-way linear model on ``dim`` pixels.

    ``n`` samples (default ``2 * n_classes``) with labels ``i mod C``; the decisive competitor of sample ``i`` is
    ``(y + 1 + i // C) mod C`` (never ``y``); even samples are breakable, odd ones are not. ``x`` has shape
    ``[n, *image_shape]`` (default 3×8×8 when ``dim == 192``, else ``[n, 1, 1, dim]``) and is correctly classified.
    """
    if not 0 < eps <= 0.1:
        raise ValueError("eps must be in (0, 0.1]")
    c = int(n_classes)
    n = 2 * c if n is None else int(n)
    if image_shape is None:
        image_shape = (3, 8, 8) if dim == 192 else (1, 1, dim)
    assert image_shape[0] * image_shape[1] * image_shape[2] == dim
    g = torch.Generator().manual_seed(int(seed))
    w = torch.randn(c, dim, generator=g, dtype=torch.float64)
    b = -0.5 * w.sum(1)  # logits centred on the grey image: small corrections below
    x = torch.empty(n, dim, dtype=torch.float64)
    y = torch.arange(n) % c
    breakable = torch.arange(n) % 2 == 0
    for i in range(n):
        yi = int(y[i])
        j = (yi + 1 + (i // c) % (c - 1)) % c
        others = [k for k in range(c) if k != yi]
        d = torch.stack([w[yi] - w[k] for k in others])  # [C-1, dim]: rows whose margins we set
        ratio = torch.tensor([(BREAKABLE_RATIO if breakable[i] else UNBREAKABLE_RATIO) if k == j else FAR_RATIO
                              for k in others], dtype=torch.float64)
        target = ratio * eps * d.abs().sum(1) - (b[yi] - b[others])
        x0 = 0.5 + 0.05 * (2 * torch.rand(dim, generator=g, dtype=torch.float64) - 1)
        # least-norm correction so that d @ x + b_y - b_k = ratio · ε ‖d‖₁ exactly
        x[i] = x0 + torch.linalg.lstsq(d, (target - d @ x0).unsqueeze(1), driver="gelsd").solution.squeeze(1)
    if not (x.min() > eps + 0.02 and x.max() < 1 - eps - 0.02):  # the box never binds
        raise RuntimeError(
            f"the construction left the pixel range [ε + 0.02, 1 − ε − 0.02] (n_classes={c}, ε={eps:.4f}, "
            f"seed={seed}); use a smaller ε or another seed"
        )
    model = LinearLogits(w.float(), b.float())
    x = x.float().view(n, *image_shape)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).all()
    return model, x, y, breakable


def l1_margin_ratios(model: LinearLogits, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """``min_k (z_y − z_k) / (ε ‖w_y − w_k‖₁)`` per sample: < 1 exactly when some L∞ attack of radius ε can win."""
    with torch.no_grad():
        z = model(x)
        w = model.weight
        out = []
        for i in range(x.shape[0]):
            yi = int(y[i])
            ks = [k for k in range(z.shape[1]) if k != yi]
            m = z[i, yi] - z[i, ks]
            l1 = (w[yi] - w[ks]).abs().sum(1)
            out.append((m / (eps * l1)).min())
    return torch.stack(out)


class InputNoise(torch.nn.Module):
    """A randomised defense: Gaussian noise on the input, new in every forward pass."""

    def __init__(self, inner: torch.nn.Module, sigma: float) -> None:
        super().__init__()
        self.inner, self.sigma = inner, sigma

    def forward(self, x):
        return self.inner(x + self.sigma * torch.randn_like(x))


class GradientNoise(torch.nn.Module):
    """A randomised toy defense whose logits are exactly linear but whose input gradient is W + s·R, R ~ N(0, 1)
    drawn anew in every pass: single-pass gradient signs are nearly random, their average is not."""

    def __init__(self, inner: torch.nn.Module, s: float) -> None:
        super().__init__()
        self.inner, self.s = inner, s

    def forward(self, x):
        z = self.inner(x)
        f = x.flatten(1)
        r = self.s * torch.randn(z.shape[1], f.shape[1], dtype=f.dtype, device=f.device)
        return z + (f - f.detach()) @ r.t()  # adds 0 to the value, s·R to the gradient


class Around(nn.Module):
    """A classifier wrapped by ``fn(inner, x)``: how the tests' plugin defenses act around zsrbench's classifier."""

    def __init__(self, inner: nn.Module, fn) -> None:
        super().__init__()
        self.inner, self.fn = inner, fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.inner, x)
