import pytest
import torch

from zsrbench.attacks.pgd import ce_loss, cw_margin_loss, eot_gradient, pgd_attack

try:  # tests/ as a package, or as a plain folder on sys.path (pytest's default "prepend" import mode)
    from tests.linear_model import GradientNoise, InputNoise, make_linear_problem
except ImportError:  # pragma: no cover
    from linear_model import GradientNoise, InputNoise, make_linear_problem
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
    from zsrbench.models.classifier import make_classifier

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


# ---------------------------------------------------------------------------------------------------------------
# EOT: gradients averaged over several forward passes of the same iterate
# ---------------------------------------------------------------------------------------------------------------


def small_conv(n_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(6 * 16, n_classes)
    )


@pytest.mark.parametrize("criterion", ["last", "any"])
@pytest.mark.parametrize("name", ["pgd", "cw"])
def test_eot_on_a_deterministic_model_changes_nothing(name, criterion):
    """Identical passes: the mean of N equal gradients has their sign, so EOT gives the very same iterates."""
    load_builtins()
    model = small_conv()
    x = torch.rand(12, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).argmax(1)
    spec = ATTACKS.get(name)
    plain = spec(model, x, y, eps=2, seed=1, **spec.config(steps=8, step=0.5, criterion=criterion))
    eot = spec(model, x, y, eps=2, seed=1, **spec.config(steps=8, step=0.5, criterion=criterion, eot=3))
    assert 0 < int(plain.success.sum()) < x.shape[0]  # a problem where the answer is not trivial
    assert torch.equal(eot.x_adv, plain.x_adv) and torch.equal(eot.success, plain.success)
    assert plain.info["eot"] == 1 and eot.info["eot"] == 3


def test_eot_gradient_of_identical_passes_has_the_same_sign():
    model = small_conv()
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    y = torch.arange(5) % 3
    one = eot_gradient(model, x.clone().requires_grad_(True), y, ce_loss, 1)
    four = eot_gradient(model, x.clone().requires_grad_(True), y, ce_loss, 4)
    assert torch.equal(one[1].sign(), four[1].sign())
    assert torch.allclose(one[1], four[1], rtol=1e-5, atol=1e-9) and torch.allclose(one[0], four[0], atol=1e-5)


def test_eot_averages_the_gradients_of_a_randomised_model():
    """Gradient variance over repeated calls drops like 1/N with N passes per gradient."""
    model = InputNoise(small_conv(), sigma=0.1)
    x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    y = torch.arange(8) % 3
    torch.manual_seed(0)

    def variance(n: int) -> float:
        g = torch.stack([eot_gradient(model, x.clone().requires_grad_(True), y, ce_loss, n)[1] for _ in range(12)])
        return float(g.var(0).mean())

    v1, v16 = variance(1), variance(16)
    assert v1 > 0
    assert v16 < 0.25 * v1  # 1/16 expected


@pytest.mark.parametrize("name", ["pgd", "cw"])
def test_eot_breaks_a_randomised_defense_plain_pgd_does_not(name):
    eps = 2 / 255
    model, x, y, breakable = binary_problem(eps, seed=1)
    noisy = GradientNoise(model, s=10.0)
    load_builtins()
    spec = ATTACKS.get(name)
    torch.manual_seed(0)
    plain = spec(noisy, x, y, eps=2, seed=0, **spec.config(steps=20, step=0.5))
    eot = spec(noisy, x, y, eps=2, seed=0, **spec.config(steps=20, step=0.5, eot=64))
    assert float(plain.success[breakable].float().mean()) < 0.3
    assert torch.equal(eot.success, breakable)  # every breakable sample and, the logits being exact, no other


class AlternatingLogitNoise(torch.nn.Module):
    """Logits ± σ·v on alternate passes (v favours the wrong class): the mean of an even number of passes is the
    clean model, single passes are misclassified every other time when σ exceeds the margin."""

    def __init__(self, inner: torch.nn.Module, sigma: float, y: torch.Tensor) -> None:
        super().__init__()
        self.inner, self.sigma, self.y, self.calls = inner, sigma, y, 0

    def forward(self, x):
        z = self.inner(x)
        self.calls += 1
        sign = 1.0 if self.calls % 2 else -1.0
        v = torch.where(torch.nn.functional.one_hot(self.y[: z.shape[0]], z.shape[1]).bool(), -1.0, 1.0)
        return z + sign * self.sigma * v


def test_eot_any_criterion_judges_the_mean_of_the_passes():
    """criterion="any" with EOT: a single lucky draw is not a break; the average of the N passes must be wrong."""
    eps = 2 / 255
    model, x, y, breakable = binary_problem(eps, seed=0)
    keep = ~breakable  # unbreakable samples: no perturbation in the ε-ball misclassifies the clean model
    x, y = x[keep], y[keep]
    plain = pgd_attack(AlternatingLogitNoise(model, 5.0, y), x, y, eps=eps, step=eps / 4, steps=4, criterion="any")
    eot = pgd_attack(AlternatingLogitNoise(model, 5.0, y), x, y, eps=eps, step=eps / 4, steps=4, criterion="any",
                     eot=2)
    assert plain.success.all()  # some single pass misclassifies every sample
    assert not eot.success.any()  # the mean of each iterate's two passes is the clean model's logits


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_eot_must_be_a_positive_integer(bad):
    model, x, y, _ = binary_problem(2 / 255, n=4)
    with pytest.raises(ValueError, match="eot must be an integer"):
        pgd_attack(model, x, y, eps=2 / 255, steps=1, eot=bad)


def test_eot_is_a_recorded_parameter_of_pgd_and_cw():
    load_builtins()
    for name in ("pgd", "cw"):
        assert ATTACKS.get(name).config()["eot"] == 1
        assert ATTACKS.get(name).config(eot=5)["eot"] == 5


# ---------------------------------------------------------------------------------------------------------------
# Early stop of last-iterate PGD: a sample whose iterates cycle stops with the iterate the full loop ends on
# ---------------------------------------------------------------------------------------------------------------


def _full_and_early(model, x, y, **kw):
    full = pgd_attack(model, x, y, early_stop=False, **kw)
    early = pgd_attack(model, x, y, **kw)
    assert torch.equal(early.x_adv, full.x_adv) and torch.equal(early.success, full.success)
    assert full.info["passes_run"] == full.info["passes_full"] == early.info["passes_full"]
    return full, early


@pytest.mark.parametrize("step_fraction", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_early_stop_is_bit_identical_on_a_linear_model(step_fraction, loss):
    eps = 2 / 255
    model, x, y, breakable = make_linear_problem(4, n=24, eps=eps)
    full, early = _full_and_early(model, x, y, eps=eps, step=eps * step_fraction, steps=100, loss=loss)
    assert torch.equal(full.success, breakable)
    assert early.info["early_stop"] == "on" and early.info["passes_run"] < early.info["passes_full"] / 2


@pytest.mark.parametrize("steps", range(1, 16))
def test_early_stop_lands_on_the_last_iterate_whatever_the_number_of_steps(steps):
    """(T − k) mod p for every T: the cycles start within a few steps of this problem."""
    model = small_conv()
    x = torch.rand(16, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y = model(x).argmax(1)
    _full_and_early(model, x, y, eps=4 / 255, step=4 / 255, steps=steps, seed=2)


@pytest.mark.parametrize("step", [1.0, 0.25])
def test_early_stop_is_bit_identical_on_the_tiny_clip(tiny_parts, step):
    """The papers' setting (step = ε = 1/255, 100 steps) and a step below ε, on a transformer CLIP: rows leave
    the batch as they finish, and the rest must take exactly the steps they take in the full batch."""
    from zsrbench.models.classifier import make_classifier

    clf, _ = make_classifier(tiny_parts, [[f"a photo of a {c}"] for c in ("cat", "dog", "car", "tree")], cache=False)
    x = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = clf(x).argmax(1)
    full, early = _full_and_early(clf, x, y, eps=1 / 255, step=step / 255, steps=100, seed=4)
    assert early.info["early_stop"] == "on" and early.info["passes_run"] < early.info["passes_full"]
    _full_and_early(clf, x, y, eps=16 / 255, step=4 / 255, steps=30, seed=4, restarts=2)


def test_early_stop_is_bit_identical_on_the_micro_clip():
    """The shipped micro CLIP on its source task, PGD-100 at step = ε = 1/255: a problem with broken and unbroken
    samples, where rows leave the batch early."""
    from zsrbench.models.clip import build_clip
    from zsrbench.models.classifier import make_classifier
    from zsrbench.registry import DATASETS

    load_builtins()
    parts = build_clip("zsr-micro", "zsrbench")
    evalset = DATASETS.get("micro_shape").build(None, image_size=parts.image_size)
    clf, _ = make_classifier(parts, evalset.info.prompts(), cache=False)
    x = torch.stack([evalset.dataset[i][0] for i in range(16)])
    y = torch.tensor([evalset.dataset[i][1] for i in range(16)])
    full, early = _full_and_early(clf, x, y, eps=1 / 255, step=1 / 255, steps=100)
    assert 0 < int(full.success.sum()) < x.shape[0]
    assert early.info["passes_run"] < early.info["passes_full"] / 2


@pytest.mark.parametrize("task, indices, seed", [("micro_color", [5, 6, 7, 8, 9], 1),
                                                   ("micro_shape", [31, 33, 39, 48, 54], 0)])
def test_early_stop_stays_exact_when_few_rows_remain(task, indices, seed):
    """Five clean-correct micro scenes, ε = 4/255, 100 steps of 1/255: near the end one to three rows remain,
    and without padding their gradients (another GEMM path for batches of 1–3) ended these two runs on other
    images than the full loop (up to 12 pixels, by up to 7/255)."""
    from zsrbench.models.clip import build_clip
    from zsrbench.models.classifier import make_classifier
    from zsrbench.registry import DATASETS

    load_builtins()
    parts = build_clip("zsr-micro", "zsrbench")
    evalset = DATASETS.get(task).build(None, image_size=parts.image_size)
    clf, _ = make_classifier(parts, evalset.info.prompts(), cache=False)
    x = torch.stack([evalset.dataset[i][0] for i in indices])
    y = torch.tensor([evalset.dataset[i][1] for i in indices])
    with torch.no_grad():
        assert torch.equal(clf(x).argmax(1), y)
    full, early = _full_and_early(clf, x, y, eps=4 / 255, step=1 / 255, steps=100, seed=seed)
    assert early.info["early_stop"] == "on" and early.info["passes_padding"] > 0


def test_padded_rows():
    from zsrbench.attacks.pgd import padded_rows

    rows = lambda active, n: padded_rows(torch.tensor(active, dtype=torch.long), n).tolist()  # noqa: E731
    assert rows([2, 5, 6, 7, 9], 10) == [2, 5, 6, 7, 9]
    assert rows([3], 10) == [0, 1, 2, 3]
    assert rows([1, 8], 10) == [0, 1, 2, 8]
    assert rows([2], 3) == [0, 1, 2]  # fewer rows than MIN_ROWS: all of them, as in the full batch
    assert rows([], 10) == []


def test_early_stop_survives_fingerprint_collisions(monkeypatch):
    """Only an exact comparison stops a sample: with every fingerprint equal, the result is still exact."""
    from zsrbench.attacks import pgd

    monkeypatch.setattr(pgd._Cycles, "fingerprints", lambda self, rows: [(0, 0)] * rows.shape[0])
    model = small_conv()
    x = torch.rand(10, 3, 4, 4, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        y = model(x).argmax(1)
    _full_and_early(model, x, y, eps=3 / 255, step=1 / 255, steps=40)


def test_early_stop_only_where_it_is_exact():
    model = small_conv()
    x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    y = torch.arange(8) % 3
    kw = dict(eps=2 / 255, step=2 / 255, steps=20)
    for off in (dict(criterion="any"), dict(eot=2), dict(early_stop=False)):
        out = pgd_attack(model, x, y, **kw, **off)
        assert out.info["early_stop"] == "off"
    assert pgd_attack(model, x, y, **kw).info["early_stop"] == "on"


def test_early_stop_turns_itself_off_for_a_randomised_model():
    """A randomised model with eot=1: the probe sees two passes differ and runs the full loop, consuming the
    global generator exactly as the loop without the probe does."""
    model = InputNoise(small_conv(), sigma=0.05)
    x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(8))
    y = torch.arange(8) % 3
    torch.manual_seed(1)
    plain = pgd_attack(model, x, y, eps=2 / 255, step=2 / 255, steps=15, early_stop=False)
    torch.manual_seed(1)
    probed = pgd_attack(model, x, y, eps=2 / 255, step=2 / 255, steps=15)
    assert probed.info["early_stop"].startswith("off: two passes")
    assert probed.info["passes_run"] == probed.info["passes_full"]
    assert torch.equal(plain.x_adv, probed.x_adv) and torch.equal(plain.success, probed.success)
