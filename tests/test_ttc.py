"""TTC (spec §11): the counterattack against a reference written from the spec, BPDA/EOT through the defended
classifier, its loading and identity, and the ttc-gate attack."""

import math

import pytest
import torch
import torch.nn.functional as F

from zsrbench.defenses.base import LoadSpec, instantiate
from zsrbench.defenses.test_time import TestTimeClassifier, exact_gradients
from zsrbench.defenses.ttc import TTC, draw_noise, ttc_counterattack, ttc_weights
from zsrbench.errors import ZsrError
from zsrbench.models.classifier import ZeroShotClassifier
from zsrbench.models.clip import build_clip
from zsrbench.registry import ATTACKS, DEFENSES

EPS, ALPHA = 4 / 255, 1 / 255


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    victim = build_clip("zsr-tiny")
    other = build_clip("zsr-tiny")  # another initialisation: stands for the original CLIP of a fine-tuned victim
    head = F.normalize(torch.randn(5, 32), dim=-1)
    clf = ZeroShotClassifier(victim.visual, head, image_size=victim.image_size)
    return victim, other, clf


def images(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 32, 32, generator=g)
    x[:, 0, :4, :4] = 0.0  # pixels on the box's edges: the clamps matter
    x[:, 1, -4:, -4:] = 1.0
    return x


def feats(clf, visual):
    return lambda z: visual(clf.prepare(z)).float()


def reference_ttc(x, fv, ftau, noise, *, eps, alpha, n, thr, beta):
    """Spec §11 steps 1-4, written out: x+δ₀ in the box; τ on f; N sign steps on Σ_b‖f_v(x+δ)−f_v(x)‖², each
    clipped to the ε ball (and x+δ to the box); Δ = Σ_k softmax(βk)_k δ_k where τ < τ_thr, else δ₀."""
    start = torch.clamp(x + noise, 0, 1)
    d = [start - x]
    with torch.no_grad():
        tau = torch.linalg.vector_norm(ftau(start) - ftau(x), dim=1) / torch.linalg.vector_norm(ftau(x), dim=1)
        target = fv(x)
    for _ in range(n):
        cur = d[-1].clone().requires_grad_(True)
        out = fv(x + cur)
        displacement = sum(((out[b] - target[b]) ** 2).sum() for b in range(x.shape[0]))
        g = torch.autograd.grad(displacement, cur)[0]
        step = torch.clamp(d[-1] + alpha * torch.sign(g), min=-eps, max=eps)
        d.append(torch.clamp(x + step, 0, 1) - x)
    z = [math.exp(beta * k) for k in range(n + 1)]
    w = [v / sum(z) for v in z]
    rows = []
    for b in range(x.shape[0]):
        delta = sum(w[k] * d[k][b] for k in range(n + 1)) if float(tau[b]) < thr else d[0][b]
        rows.append(torch.clamp(x[b] + delta, 0, 1))
    return torch.stack(rows), tau


def test_weights_are_the_papers():
    w = ttc_weights(2, 2.0)
    assert w.tolist() == pytest.approx([0.016, 0.117, 0.867], abs=1e-3)
    assert float(w.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("separate_tau", [False, True])
def test_counterattack_matches_the_spec(tiny, separate_tau):
    victim, other, clf = tiny
    x = images()
    noise = draw_noise(x, EPS, torch.Generator().manual_seed(7))
    fv = feats(clf, victim.visual)
    ftau = feats(clf, other.visual) if separate_tau else None
    kw = {"eps": EPS, "step": ALPHA, "steps": 2, "beta": 2.0}
    _, probe = ttc_counterattack(x, fv, ftau, tau_thr=0.2, delta0=noise, **kw)
    taus = probe["tau"].sort().values
    mid = float(taus[2] + taus[3]) / 2  # half the images below the threshold, half above
    for thr in (0.0, mid, 1e9):
        got, info = ttc_counterattack(x, fv, ftau, tau_thr=thr, delta0=noise, **kw)
        want, tau = reference_ttc(x, fv, ftau or fv, noise, eps=EPS, alpha=ALPHA, n=2, thr=thr, beta=2.0)
        assert torch.allclose(info["tau"], tau, atol=1e-6, rtol=0)
        assert info["counterattacked"].tolist() == (tau < thr).tolist()
        assert (got - want).abs().max() <= 1e-6
        assert (got - x).abs().max() <= EPS + 1e-6 and got.min() >= 0 and got.max() <= 1
    mixed = ttc_counterattack(x, fv, ftau, tau_thr=mid, delta0=noise, **kw)[1]["counterattacked"]
    assert mixed.any() and not mixed.all()  # both gate outcomes covered
    noise_only = ttc_counterattack(x, fv, ftau, tau_thr=0.0, delta0=noise, **kw)[0]
    assert torch.allclose(noise_only, torch.clamp(x + noise, 0, 1), atol=1e-7)  # gate shut: Δ = δ₀


def defended(tiny, **params):
    _, _, clf = tiny
    ttc = instantiate(TTC, params)
    model = ttc.wrap_classifier(clf)
    assert isinstance(model, TestTimeClassifier)
    return ttc, model


def test_bpda_is_the_identity_through_the_counterattack(tiny):
    _, _, clf = tiny
    ttc, model = defended(tiny, tau_thr=1e3)  # every image counterattacked
    x, y = images(), torch.arange(6) % 5
    model.reseed(11)
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    (g_bpda,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xg)
    model.reseed(11)
    with torch.no_grad():
        x_def = ttc._counter(x, clf, model.generator)[0]
    xd = x_def.clone().requires_grad_(True)
    ref_logits = clf(xd)
    (g_ref,) = torch.autograd.grad(F.cross_entropy(ref_logits, y, reduction="sum"), xd)
    assert torch.equal(logits.detach(), ref_logits.detach())
    assert torch.allclose(g_bpda, g_ref, atol=1e-7, rtol=1e-6)
    model.reseed(11)
    with exact_gradients():
        xg = x.clone().requires_grad_(True)
        exact_logits = model(xg)
        (g_exact,) = torch.autograd.grad(F.cross_entropy(exact_logits, y, reduction="sum"), xg)
    assert torch.equal(exact_logits.detach(), logits.detach())  # the same forward pass
    assert torch.isfinite(g_exact).all() and not torch.allclose(g_exact, g_bpda)  # the clamps' own gradient


def test_draws_come_from_the_classifiers_generator(tiny):
    _, model = defended(tiny)
    x = images()
    with torch.no_grad():
        model.reseed(5)
        a, b = model(x), model(x)
        model.reseed(5)
        a2 = model(x)
        model.reseed(6)
        c = model(x)
    assert torch.equal(a, a2)
    assert not torch.equal(a, b) and not torch.equal(a, c)


def test_gate_tau_replays_the_defenses_draw(tiny):
    _, _, clf = tiny
    ttc, model = defended(tiny)
    x = images()
    model.reseed(3)
    state = model.generator.get_state()
    _, info = ttc._counter(x, clf, model.generator)
    replay = torch.Generator()
    replay.set_state(state)
    xg = x.clone().requires_grad_(True)
    tau = ttc.gate_tau(xg, clf, replay)
    assert torch.allclose(tau.detach(), info["tau"], atol=1e-6, rtol=0)
    (g,) = torch.autograd.grad(tau.sum(), xg)  # τ is differentiable in the input
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_ttc_gate_stays_in_the_ball(tiny):
    from zsrbench.evaluation.unit import FiniteWitness

    _, _, clf = tiny
    _, model = defended(tiny)
    x, y = images(), torch.arange(6) % 5
    spec = ATTACKS.get("ttc-gate")
    out = spec(FiniteWitness(model, x, 4 / 255), x, y, eps=4.0, seed=0, step=1.0, steps=2, eot=2, lam=10.0)
    assert out.x_adv.shape == x.shape and out.success.dtype == torch.bool and out.success.shape == (6,)
    assert (out.x_adv - x).abs().max() <= 4 / 255 + 1e-6 and out.x_adv.min() >= 0 and out.x_adv.max() <= 1
    assert not any(p.grad is not None for p in clf.parameters())
    with pytest.raises(ZsrError, match="ttc-gate attacks TTC's gate"):
        spec(clf, x, y, eps=4.0, seed=0, steps=1, eot=1)


def test_ttc_gate_through_a_work_unit(tiny):
    from zsrbench.evaluation.unit import evaluate_unit

    _, model = defended(tiny)
    x, y = images(4), torch.arange(4) % 5
    with torch.no_grad():
        y = model(x).argmax(1)  # all clean-correct: every sample is attacked
    spec = ATTACKS.get("ttc-gate")
    res = evaluate_unit(model, x, y, [spec], {"ttc-gate": spec.config(steps=1, eot=1)}, eps=4.0, seed=0, index=0,
                        start=0, device="cpu", precision="fp32")
    assert res.robust["ttc-gate"].shape == (4,)


@pytest.mark.parametrize("victim", ["nope", "ttc"])
def test_bad_victim_is_refused(victim):
    with pytest.raises(ZsrError, match=f"ttc.victim={victim}"):
        instantiate(DEFENSES.get("ttc"), {"victim": victim})
    with pytest.raises(ZsrError, match="registered defense|TTC itself"):
        TTC(inference={"victim": victim})


def test_load_keeps_the_original_for_tau(tmp_path, tiny):
    plain = instantiate(TTC, {"victim": "tecoa"})
    torch.manual_seed(0)
    parts = plain.load(LoadSpec(model="zsr-tiny"))  # no checkpoint: the victim is the original, τ on it
    assert plain.tau_visual is None and "tau_encoder_tensors_sha256" not in plain.inference_identity()
    g = torch.Generator().manual_seed(0)
    state = {k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in parts.visual.state_dict().items()}
    torch.save(state, tmp_path / "tuned.pt")
    tuned = instantiate(TTC, {"victim": "tecoa"})
    torch.manual_seed(0)
    fine = tuned.load(LoadSpec(model="zsr-tiny", checkpoint=str(tmp_path / "tuned.pt")))
    assert tuned.tau_parts is not None and tuned.tau_parts.tensors_sha256() == parts.tensors_sha256()
    assert fine.tensors_sha256() != parts.tensors_sha256()
    ident = tuned.inference_identity()
    assert ident["tau_encoder_tensors_sha256"] == parts.tensors_sha256() and ident["params"]["victim"] == "tecoa"
    assert not any(p.requires_grad for p in tuned.tau_visual.parameters())
    head = F.normalize(torch.randn(5, 32, generator=g), dim=-1)
    model = tuned.wrap_classifier(ZeroShotClassifier(fine.visual, head, image_size=fine.image_size))
    with torch.no_grad():
        assert torch.isfinite(model(images())).all()


def test_fp16_counterattack_runs_on_cpu(tiny):
    _, model16 = defended(tiny, precision="fp16")
    _, model32 = defended(tiny)
    x = images()
    with torch.no_grad():
        model16.reseed(1)
        model32.reseed(1)
        a, b = model16(x), model32(x)
    assert a.dtype == torch.float32 and torch.isfinite(a).all()
    assert (a - b).abs().max() < 5.0  # the same defense, another precision
