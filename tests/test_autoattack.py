"""The official AutoAttack adapter (`autoattack`, `aa-lite`, `aa-fare`, `aa-rand`) and the optional torchattacks extra.

Speed: every attack runs at its full protocol strength (100 iterations, 9 targets, 5000 Square queries); the inputs
are what keeps this file fast: tiny models, few samples, and AutoAttack's per-iteration cost dominated by overhead.
"""

from __future__ import annotations

import logging
import sys

import pytest
import torch

try:  # tests/ as a package, or as a plain folder on sys.path (pytest's default "prepend" import mode)
    from tests.linear_model import GradientNoise, InputNoise, l1_margin_ratios, make_linear_problem
except ImportError:  # pragma: no cover
    from linear_model import GradientNoise, InputNoise, l1_margin_ratios, make_linear_problem
from zsrbench.attacks.autoattack_official import pyautoattack_version
from zsrbench.attacks.autoattack_plan import PROTOCOL_ATTACKS, plan_attacks
from zsrbench.errors import ZsrError
import zsrbench.attacks  # noqa: F401  (registers the attacks)
from zsrbench.registry import ATTACKS

AA_NAMES = ("autoattack", "aa-lite", "aa-fare", "aa-rand")
LITE = ("aa-lite", "aa-rand")  # APGD-CE + untargeted APGD-DLR: the same fallbacks
EPS = 2.0  # in units of 1/255, as the runner passes it


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # tiny tensors: one intra-op thread avoids thread wake-up latency on a busy 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_conv(n_classes: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2), torch.nn.Flatten(),
        torch.nn.Dropout(0.5), torch.nn.Linear(6 * 16, n_classes),
    )
    with torch.no_grad():
        m[-1].weight.mul_(20.0)  # sensitive enough that ε = 4/255 or 8/255 breaks some samples but not all
    return m


# ---------------------------------------------------------------------------------------------------------------
# the fallback table
# ---------------------------------------------------------------------------------------------------------------

TABLE = {  # (protocol, C) -> (attacks, n_target_classes)
    ("autoattack", 10): (["apgd-ce", "apgd-t", "fab-t", "square"], 9),
    ("autoattack", 100): (["apgd-ce", "apgd-t", "fab-t", "square"], 9),
    ("autoattack", 8): (["apgd-ce", "apgd-t", "fab-t", "square"], 7),
    ("autoattack", 4): (["apgd-ce", "apgd-t", "fab-t", "square"], 3),
    ("autoattack", 3): (["apgd-ce", "apgd-dlr", "fab-t", "square"], 2),
    ("autoattack", 2): (["apgd-ce", "fab-t", "square"], 1),
    ("aa-lite", 10): (["apgd-ce", "apgd-dlr"], None),
    ("aa-lite", 3): (["apgd-ce", "apgd-dlr"], None),
    ("aa-lite", 2): (["apgd-ce"], None),
    ("aa-fare", 10): (["apgd-ce", "apgd-t"], 9),
    ("aa-fare", 9): (["apgd-ce", "apgd-t"], 8),
    ("aa-fare", 4): (["apgd-ce", "apgd-t"], 3),
    ("aa-fare", 3): (["apgd-ce", "apgd-dlr"], None),
    ("aa-fare", 2): (["apgd-ce"], None),
    ("aa-rand", 10): (["apgd-ce", "apgd-dlr"], None),
    ("aa-rand", 3): (["apgd-ce", "apgd-dlr"], None),
    ("aa-rand", 2): (["apgd-ce"], None),
}


@pytest.mark.parametrize("protocol,c", sorted(TABLE))
def test_fallback_table(protocol, c):
    attacks, targets = TABLE[(protocol, c)]
    plan = plan_attacks(PROTOCOL_ATTACKS[protocol], c)
    assert plan.attacks == attacks
    assert plan.n_target_classes == targets
    unchanged = c >= 10 or (protocol in LITE and c >= 3)
    assert bool(plan.adjustments) is not unchanged
    assert plan.fallback is (c < 4 and not (protocol in LITE and c == 3))


def test_fewer_than_two_classes_is_an_error():
    with pytest.raises(ZsrError, match="at least 2 classes"):
        plan_attacks(PROTOCOL_ATTACKS["autoattack"], 1)


def test_registered_specs():
    for name in AA_NAMES:
        spec = ATTACKS.get(name)
        assert spec.family == "autoattack" and spec.per255 == ()
        assert ATTACKS.origin(name) == "zsrbench"
    assert ATTACKS.get("autoattack").config() == {"n_target_classes": 9, "n_queries": 5000}
    assert ATTACKS.get("aa-lite").config() == {"n_iter": 100, "n_restarts": 1}
    assert ATTACKS.get("aa-fare").config() == {"n_iter": 100, "n_restarts": 5, "n_target_classes": 9}
    assert ATTACKS.get("aa-rand").config() == {"n_iter": 100, "n_restarts": 1, "eot_iter": 20}
    assert "rand" in ATTACKS.get("aa-rand").description and "EOT" in ATTACKS.get("aa-rand").description
    with pytest.raises(ZsrError, match="no parameter eot"):  # `--eot` is pgd/cw's; aa-rand's EOT is eot_iter
        ATTACKS.get("aa-rand").config(eot=5)
    with pytest.raises(ZsrError, match="no parameter steps"):
        ATTACKS.get("aa-lite").config(steps=10)


# ---------------------------------------------------------------------------------------------------------------
# 2-, 3-, 8- and 10-class problems: no crash, the known answer, the recorded adjustments
# ---------------------------------------------------------------------------------------------------------------

_RUNS: dict = {}


def linear_run(name: str, c: int):
    """One cached run of ``name`` on the ``c``-class linear problem plus one sample misclassified clean."""
    if (name, c) not in _RUNS:
        model, x, y, breakable = make_linear_problem(c, eps=EPS / 255, seed=c)
        y = y.clone()
        y[-1] = (y[-1] + 1) % c  # misclassified clean: counts as a success, x_adv = x
        expected = breakable.clone()
        expected[-1] = True
        out = ATTACKS.get(name)(model, x, y, eps=EPS, seed=0, **ATTACKS.get(name).config())
        _RUNS[(name, c)] = (model, x, y, expected, out)
    return _RUNS[(name, c)]


@pytest.mark.parametrize("c", [2, 3, 8, 10])
@pytest.mark.parametrize("name", AA_NAMES)
def test_linear_problem_every_class_count(name, c):
    model, x, y, expected, out = linear_run(name, c)
    info = out.info
    # the known answer: breakable (or misclassified clean) samples and no others
    assert torch.equal(out.success, expected)
    # constraints and success ⇒ misclassified
    assert out.x_adv.shape == x.shape and out.x_adv.dtype == x.dtype
    assert float((out.x_adv - x).abs().max()) <= EPS / 255 + 1e-6
    assert float(out.x_adv.min()) >= 0.0 and float(out.x_adv.max()) <= 1.0
    with torch.no_grad():
        pred = model(out.x_adv).argmax(1)
    assert (pred[out.success] != y[out.success]).all()
    assert torch.equal(out.x_adv[-1], x[-1])  # misclassified clean: left as it is
    assert all(p.grad is None for p in model.parameters())
    # what was run, with which targets, and why
    attacks = list(PROTOCOL_ATTACKS[name])
    attacks, targets = TABLE.get((name, c)) or (attacks, min(9, c - 1) if "apgd-t" in attacks else None)
    assert info["n_classes"] == c
    assert info["attacks"] == attacks
    assert info["attacks_run"] == attacks  # unbreakable samples survive, so every attack runs
    assert info["n_target_classes"] == targets
    assert info["pyautoattack_version"] == pyautoattack_version() != "not installed"
    assert info["clean_accuracy"] == pytest.approx(1 - 1 / x.shape[0], abs=1e-3)
    survivors = float((~expected).float().mean())
    assert info["robust_accuracy_after"]["apgd-ce"] == pytest.approx(survivors, abs=1e-3)
    for attack, cfg in info["config"].items():
        if attack in ("apgd", "apgd-t", "fab-t"):
            assert cfg["n_iter"] == 100
        if attack in ("apgd-t", "fab-t"):
            assert cfg["n_target_classes"] == targets
    if name == "aa-fare":
        assert info["config"]["apgd"]["n_restarts"] == 5
    # EOT: 20 gradient passes per APGD step in the rand version, 1 elsewhere
    assert info["config"]["apgd"]["eot_iter"] == (20 if name == "aa-rand" else 1)
    if name == "aa-rand":
        assert info["config"]["apgd"]["n_restarts"] == 1
        assert info["standard"] is (c >= 3)  # the official rand version, unless a fallback changed it
    if name == "autoattack":
        assert info["config"]["square"]["n_queries"] == 5000
        assert info["config"]["apgd"]["n_restarts"] == 1
        assert info["standard"] is (c >= 10)
    text = " ".join(info["adjustments"])
    if c == 2:
        assert info["fallback"] is True
        assert info["dropped"] == (["apgd-dlr"] if name in LITE else ["apgd-t"])
        assert "APGD-CE" in text and "dropped" in text
    elif c == 3 and name not in LITE:
        assert info["substituted"] == {"apgd-t": "apgd-dlr"}
    elif c == 8 and name not in LITE:
        assert "7 target classes instead of 9" in text
    elif c == 10 or name in LITE:
        assert info["dropped"] == [] and info["substituted"] == {}
    if c == 3:  # AutoAttack's coarse class-count check fires for any DLR attack with 3 classes: recorded
        assert "n_classes" in info["flags"]
    else:
        assert info["flags"] == [] and info["warnings"] == []


@pytest.mark.parametrize("c", [2, 10])
def test_known_answer_apgd_ce_of_aa_lite(c):
    """APGD-CE alone breaks exactly the samples whose margin is below ε‖w_y − w_j‖₁."""
    eps = 4 / 255
    model, x, y, breakable = make_linear_problem(c, eps=eps, seed=100 + c, n=30)
    ratios = l1_margin_ratios(model, x, y, eps)
    assert torch.equal(ratios < 1, breakable)
    out = ATTACKS.get("aa-lite")(model, x, y, eps=4, seed=1)
    assert torch.equal(out.success, breakable)
    # the first attack of the ensemble already broke all of them
    assert out.info["attacks_run"][0] == "apgd-ce"
    assert out.info["robust_accuracy_after"]["apgd-ce"] == pytest.approx(float((~breakable).float().mean()), abs=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# aa-rand: the official rand version on randomised models
# ---------------------------------------------------------------------------------------------------------------


def test_aa_rand_breaks_a_randomised_defense_that_aa_lite_does_not():
    """EOT averages the noisy gradients: APGD-CE with 20 passes per step finds what single passes do not."""
    model, x, y, breakable = make_linear_problem(2, eps=EPS / 255, seed=2, n=20)
    noisy = GradientNoise(model, s=10.0)
    lite = ATTACKS.get("aa-lite")(noisy, x, y, eps=EPS, seed=0)
    rand = ATTACKS.get("aa-rand")(noisy, x, y, eps=EPS, seed=0)
    assert float(lite.success[breakable].float().mean()) < 0.3
    assert torch.equal(rand.success, breakable)  # all breakable ones, and (exact logits) no other
    assert rand.info["attacks"] == ["apgd-ce"] and rand.info["dropped"] == ["apgd-dlr"]  # 2 classes: recorded
    assert rand.info["config"]["apgd"]["eot_iter"] == 20


def test_aa_rand_on_a_model_with_random_inputs_is_seeded_and_recorded():
    """Noise on the input: aa-lite's randomised-defense check fires, aa-rand's version skips it; the official
    code re-seeds torch's generator, so the model's draws (and the result) repeat with the seed; changed
    settings are recorded and the run is then not the official one."""
    model = InputNoise(small_conv(10, seed=3), sigma=0.02)
    model.eval()
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = small_conv(10, seed=3).eval()(x).argmax(1)
    lite = ATTACKS.get("aa-lite")(model, x, y, eps=4, seed=1, n_iter=5)
    assert "randomized" in lite.info["flags"]
    spec = ATTACKS.get("aa-rand")
    rng = torch.get_rng_state()
    a = spec(model, x, y, eps=4, seed=1, **spec.config(n_iter=5, eot_iter=3))
    assert torch.equal(torch.get_rng_state(), rng)
    b = spec(model, x, y, eps=4, seed=1, **spec.config(n_iter=5, eot_iter=3))
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    assert "randomized" not in a.info["flags"]
    assert a.info["config"]["apgd"] == {"n_iter": 5, "n_restarts": 1, "eot_iter": 3, "rho": 0.75}
    assert a.info["standard"] is False and a.info["protocol"] == "aa-rand"
    assert float((a.x_adv - x).abs().max()) <= 4 / 255 + 1e-6
    with pytest.raises(ZsrError, match="eot_iter must be an integer"):
        spec(model, x, y, eps=4, seed=1, n_iter=5, eot_iter=0)


# ---------------------------------------------------------------------------------------------------------------
# a non-linear model: determinism, constraints, model state, RNG state
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,c,eps", [("aa-lite", 10, 4.0), ("aa-fare", 4, 8.0)])
def test_seeded_determinism_and_state(name, c, eps):
    model = small_conv(c)
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        y = model(x).argmax(1)
    model.train()  # has dropout: the adapter must attack it in eval mode and give it back in train mode
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    spec = ATTACKS.get(name)
    torch.manual_seed(1234)
    rng = torch.get_rng_state()
    a = spec(model, x, y, eps=eps, seed=5)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG stream is untouched
    b = spec(model, x, y, eps=eps, seed=5)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)
    assert 0 < int(a.success.sum()) < x.shape[0]  # some samples broken, some robust
    assert float((a.x_adv - x).abs().max()) <= eps / 255 + 1e-6
    assert float(a.x_adv.min()) >= 0.0 and float(a.x_adv.max()) <= 1.0
    model.eval()
    with torch.no_grad():
        pred = model(a.x_adv).argmax(1)
    assert (pred[a.success] != y[a.success]).all()
    assert "randomized" not in a.info["flags"]  # dropout was off during the attack
    model.train()
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())
    assert a.info["seed"] == 5


def test_autoattack_seeded_determinism_and_state():
    """Rerun the 2-class `autoattack` (APGD-CE, FAB-T, Square) with the same seed: the same result.

    FAB calls ``backward()``: existing parameter gradients must stay untouched and none may accumulate.
    """
    model, x, y, expected, first = linear_run("autoattack", 2)
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    rng = torch.get_rng_state()
    again = ATTACKS.get("autoattack")(model, x, y, eps=EPS, seed=0)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(again.x_adv, first.x_adv) and torch.equal(again.success, first.success)
    assert again.info["robust_accuracy_after"] == first.info["robust_accuracy_after"]
    assert again.info["attacks_run"] == ["apgd-ce", "fab-t", "square"]
    assert model.training
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) and p.requires_grad for p in model.parameters())
    for p in model.parameters():
        p.grad = None
    model.eval()


class _CastToFloat(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.float())


def test_non_contiguous_and_other_dtype_inputs():
    model, x, y, breakable = make_linear_problem(4, eps=2 / 255, seed=3)
    base = ATTACKS.get("aa-lite")(model, x, y, eps=2, seed=0)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, non-contiguous strides
    assert not xt.is_contiguous()
    out = ATTACKS.get("aa-lite")(model, xt, y, eps=2, seed=0)
    assert torch.equal(out.success, breakable) and torch.equal(out.x_adv, base.x_adv)
    # AutoAttack feeds float32 to the model; x_adv comes back in the caller's dtype
    out64 = ATTACKS.get("aa-lite")(_CastToFloat(model), x.double(), y, eps=2, seed=0)
    assert out64.x_adv.dtype == torch.float64
    assert torch.equal(out64.success, breakable)
    assert float((out64.x_adv - x.double()).abs().max()) <= 2 / 255 + 1e-6


def test_bad_inputs_and_empty_batch():
    model, x, y, _ = make_linear_problem(3, eps=2 / 255, seed=0)
    with pytest.raises(ZsrError, match=r"\[N, C, H, W\]"):
        ATTACKS.get("aa-lite")(model, x.flatten(1), y, eps=2, seed=0)
    out = ATTACKS.get("autoattack")(model, x[:0], y[:0], eps=2, seed=0)
    assert out.x_adv.shape[0] == 0 and out.success.shape == (0,)


def test_autoattack_checks_are_captured_not_printed(caplog):
    """A model that returns probabilities trips AutoAttack's softmax check: recorded in info, logger restored."""
    model, x, y, _ = make_linear_problem(10, eps=2 / 255, seed=4)
    probs = torch.nn.Sequential(model, torch.nn.Softmax(dim=1))
    logger = logging.getLogger("auto-attack")
    state = (logger.level, logger.propagate, list(logger.handlers))
    trace = sys.gettrace()
    with caplog.at_level(logging.DEBUG):
        out = ATTACKS.get("aa-lite")(probs, x, y, eps=2, seed=0)
    assert "softmax_output" in out.info["flags"]
    assert any("probability distribution" in w for w in out.info["warnings"])
    assert not [r for r in caplog.records if r.name == "auto-attack"]
    assert (logger.level, logger.propagate, list(logger.handlers)) == state
    assert sys.gettrace() is trace  # AutoAttack's dynamic-defense check must not leave tracing off/on


def test_inference_mode_caller():
    model, x, y, breakable = make_linear_problem(3, eps=2 / 255, seed=6)
    with torch.inference_mode():
        out = ATTACKS.get("aa-lite")(model, x, y, eps=2, seed=0)
    assert torch.equal(out.success, breakable)


# ---------------------------------------------------------------------------------------------------------------
# the optional torchattacks extra
# ---------------------------------------------------------------------------------------------------------------


def test_torchattacks_missing_is_a_clear_error(monkeypatch):
    from zsrbench.attacks import torchattacks_ext

    monkeypatch.setitem(sys.modules, "torchattacks", None)  # makes `import torchattacks` raise ImportError
    with pytest.raises(ZsrError, match=r"zsrbench\[torchattacks\]"):
        torchattacks_ext.resolve_torchattacks("ta:FGSM")
    assert torchattacks_ext.is_available() is False
    assert torchattacks_ext.available_names() == []


def test_torchattacks_module_imports_lazily():
    import importlib

    was = sys.modules.pop("torchattacks", None)
    try:
        importlib.reload(importlib.import_module("zsrbench.attacks.torchattacks_ext"))
        assert "torchattacks" not in sys.modules
    finally:
        if was is not None:
            sys.modules["torchattacks"] = was


def test_torchattacks_attacks_when_installed():
    pytest.importorskip("torchattacks")
    from zsrbench.attacks.torchattacks_ext import available_names, resolve_torchattacks

    assert "ta:FGSM" in available_names() and "ta:PGD" in available_names()
    fgsm = resolve_torchattacks("ta:fgsm")
    assert fgsm.name == "ta:FGSM" and fgsm.family == "torchattacks"
    assert "third-party" in fgsm.description and "not the paper" in fgsm.description
    pgd = resolve_torchattacks("ta:PGD")
    assert pgd.per255 == ("alpha",) and pgd.defaults["alpha"] == pytest.approx(2.0)
    for not_linf in ("ta:CW", "ta:PGDL2"):
        with pytest.raises(ZsrError, match="not an L∞ attack"):
            resolve_torchattacks(not_linf)
    with pytest.raises(ZsrError, match="takes no 'eps'"):
        resolve_torchattacks("ta:PIFGSM")
    with pytest.raises(ZsrError, match="Did you mean 'ta:FGSM'"):
        resolve_torchattacks("ta:FGSN")
    model, x, y, breakable = make_linear_problem(3, eps=4 / 255, seed=7)
    for spec in (fgsm, pgd):
        a = spec(model, x, y, eps=4, seed=0, **spec.config())
        b = spec(model, x, y, eps=4, seed=0, **spec.config())
        assert torch.equal(a.x_adv, b.x_adv)
        assert float((a.x_adv - x).abs().max()) <= 4 / 255 + 1e-6
        assert not (a.success & ~breakable).any()  # nothing unbreakable is ever broken
        assert "torchattacks" in a.info["implementation"]
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ZsrError, match="failed on this problem"):  # torchattacks' APGDT needs ≥ 4 classes
        spec = resolve_torchattacks("ta:APGDT")
        spec(model, x, y, eps=4, seed=0, **spec.config())
