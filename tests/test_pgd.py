import pytest
import torch

from zsrbench.attacks.pgd import cw_margin_loss, pgd_attack
from zsrbench.registry import ATTACKS, load_builtins


class Linear(torch.nn.Module):
    """Logits linear in the pixels: z = W x + b (x flattened)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)
        self.b = torch.nn.Parameter(b)

    def forward(self, x):
        return x.flatten(1) @ self.w.t() + self.b


def binary_problem(eps: float, n: int = 40, dim: int = 3 * 4 * 4, seed: int = 0):
    """Two classes; the L∞ margin needed is m / ‖w_y − w_j‖₁: half the samples below ε, half above."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(2, dim, generator=g)
    x = 0.3 + 0.4 * torch.rand(n, dim, generator=g)  # far from the box edges: the box never blocks the step
    y = torch.arange(n) % 2
    l1 = (w[0] - w[1]).abs().sum()
    # choose bias per sample via a shift of x along (w_y - w_j) so the margin is exactly what we want
    ratio = torch.where(torch.arange(n) < n // 2, torch.tensor(0.5), torch.tensor(1.5))  # margin / (ε‖·‖₁)
    d = (w[0] - w[1])
    for i in range(n):
        sgn = 1.0 if y[i] == 0 else -1.0
        m = float((x[i] @ d) * sgn)
        target = float(ratio[i] * eps * l1)
        x[i] = x[i] + sgn * (target - m) * d / (d @ d)
    assert x.min() > 0.05 and x.max() < 0.95
    model = Linear(w, torch.zeros(2))
    breakable = ratio < 1
    return model, x.view(n, 3, 4, 4), y, breakable


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_known_answer_linear_model(loss):
    eps = 2 / 255
    model, x, y, breakable = binary_problem(eps)
    assert (model(x).argmax(1) == y).all()
    out = pgd_attack(model, x, y, eps=eps, seed=0, step=eps / 4, steps=20, loss=loss)
    assert torch.equal(out.success, breakable)


def test_box_and_ball_constraints_and_determinism(tiny_parts):
    from zsrbench.models import make_classifier

    clf, _ = make_classifier(tiny_parts, [["a photo of a cat"], ["a photo of a dog"], ["a photo of a car"]], cache=False)
    x = torch.rand(6, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    eps = 8 / 255
    load_builtins()
    for p in clf.parameters():  # the session's tiny model may carry gradients from other tests
        p.grad = None
    for name in ("pgd", "cw"):
        spec = ATTACKS.get(name)
        a = spec(clf, x, y, eps=8, seed=3, steps=5, step=2)
        b = spec(clf, x, y, eps=8, seed=3, steps=5, step=2)
        assert (a.x_adv - x).abs().max() <= eps + 1e-6
        assert a.x_adv.min() >= 0 and a.x_adv.max() <= 1
        assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
        with torch.no_grad():
            assert torch.equal(a.success, clf(a.x_adv).argmax(1) != y)
    assert all(p.grad is None for p in clf.parameters())


def test_any_criterion_is_at_least_as_strong():
    eps = 2 / 255
    model, x, y, breakable = binary_problem(eps, seed=1)
    last = pgd_attack(model, x, y, eps=eps, seed=0, step=eps / 4, steps=20)
    anyc = pgd_attack(model, x, y, eps=eps, seed=0, step=eps / 4, steps=20, criterion="any")
    assert (anyc.success >= last.success).all()
    assert torch.equal(anyc.success, breakable)
    with torch.no_grad():
        assert torch.equal(anyc.success, model(anyc.x_adv).argmax(1) != y)


def test_cw_margin_loss_values():
    logits = torch.tensor([[10.0, 2.0, 5.0], [0.0, 90.0, 1.0]])
    y = torch.tensor([0, 0])
    # sample 0: z_y - max_other = 5 -> -(5 + 50); sample 1: 0 - 90 + 50 = -40 -> relu 0
    assert torch.allclose(cw_margin_loss(logits, y, 50.0), torch.tensor([-55.0, 0.0]))


def test_restarts_only_improve():
    eps = 2 / 255
    model, x, y, breakable = binary_problem(eps, seed=2)
    one = pgd_attack(model, x, y, eps=eps, seed=0, step=eps, steps=1)
    three = pgd_attack(model, x, y, eps=eps, seed=0, step=eps, steps=1, restarts=3)
    assert (three.success >= one.success).all()
    assert not (three.success & ~breakable).any()
