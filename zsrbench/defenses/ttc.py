"""TTC (Xing et al., CVPR 2025): test-time counterattacks on the victim's image features (spec §11).

Per image, at inference: draw ``δ₀ ~ U[−ε, ε]`` (``x + δ₀`` clamped to [0,1]); ``τ = ‖f(x+δ₀) − f(x)‖ / ‖f(x)‖``
on unnormalised image features (``f`` = the original CLIP's visual encoder when a fine-tuned victim is loaded,
else the victim); ``N`` sign steps of size α maximising ``Σ_b ‖f_v(x+δ) − f_v(x)‖²`` (``f_v`` the victim, ``f_v(x)``
without gradient), each projected to the ε ball; if ``τ < τ_thr`` the perturbation is ``Δ = Σ_{k=0..N}
softmax(β·k)_k δ_k`` (k = 0 is δ₀), else ``Δ = δ₀``; the victim classifies ``x + Δ``.

zsrbench's choices where the spec is silent: ``x + δ_k`` is clamped to [0,1] after every step as ``x + δ₀`` is
(every ``δ_k`` is a perturbation of a valid image, so ``x + Δ``, a convex combination, is one too; its final clamp
only removes rounding); the counterattack runs on every image whatever its τ (the result is the same; the batch
stays batch-invariant). The adaptive attacks go through the whole counterattack with BPDA (identity) and EOT over
δ₀ (:attr:`TTC.test_time`); ``ttc-gate`` (:mod:`zsrbench.defenses.ttc_attack`) also attacks the gate.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from zsrbench.defenses.base import Defense, LoadSpec, Step, TestTime, bpda, instantiate
from zsrbench.errors import ZsrError
from zsrbench.models.clip import CLIPParts
from zsrbench.params import Params
from zsrbench.registry import DEFENSES

Features = Callable[[torch.Tensor], torch.Tensor]  # images in [0,1] → unnormalised image embeddings [B, D]


def ttc_weights(steps: int, beta: float) -> torch.Tensor:
    """``softmax(β·k)`` for k = 0..steps (float64): the weights of δ₀..δ_N (β = 2, N = 2: .016/.117/.867)."""
    return torch.softmax(float(beta) * torch.arange(int(steps) + 1, dtype=torch.float64), dim=0)


def draw_noise(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """``U[−ε, ε]`` noise of ``x``'s shape: the only draw of one counterattack (the gate attack replays it)."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (2 * u - 1) * eps


def start_delta(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """δ₀ as applied: ``clamp(x + noise, 0, 1) − x`` (differentiable in ``x``)."""
    return (x + noise).clamp(0.0, 1.0) - x


def ttc_tau(x: torch.Tensor, delta0: torch.Tensor, tau_features: Features) -> torch.Tensor:
    """Per-image ``τ = ‖f(x+δ₀) − f(x)‖ / ‖f(x)‖`` (float32; differentiable in ``x`` and ``δ₀``)."""
    fx = tau_features(x).float()
    return (tau_features(x + delta0).float() - fx).norm(dim=-1) / fx.norm(dim=-1)


def ttc_counterattack(x: torch.Tensor, victim_features: Features, tau_features: Features | None = None, *,
                      eps: float, step: float, steps: int, tau_thr: float, beta: float,
                      generator: torch.Generator | None = None,
                      delta0: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """TTC's counterattack of images ``x`` in [0,1] (sizes in pixel units): ``(x + Δ, info)``.

    ``tau_features`` (None: the victim's) gives the features τ is measured on. ``delta0``: the noise to use
    instead of a draw from ``generator`` (it is clamped like a draw: ``x + δ₀`` in [0,1]). The search is detached
    (gradients with respect to δ only, :func:`torch.autograd.grad`; parameter gradients never accumulate); the
    returned image keeps ``x``'s autograd history through the clamps (its exact gradient, which BPDA replaces).
    ``info``: ``tau`` [B], ``counterattacked`` [B] (τ < τ_thr) and the ``weights`` of δ₀..δ_N.
    """
    if delta0 is None:
        if generator is None:
            raise ZsrError("ttc_counterattack needs a generator to draw δ₀ from (or delta0).")
        delta0 = draw_noise(x, eps, generator)
    xd = x.detach()
    with torch.no_grad():
        ref = victim_features(xd).float()
    delta = start_delta(x, delta0.to(x.dtype))
    deltas = [delta]
    tau = None
    for k in range(int(steps)):
        with torch.enable_grad():
            d = delta.detach().requires_grad_(True)
            feats = victim_features(xd + d).float()
            (grad,) = torch.autograd.grad(((feats - ref) ** 2).sum(), d)
        if k == 0 and tau_features is None:  # f = f_v: the first step's forward is f(x + δ₀)
            tau = (feats.detach() - ref).norm(dim=-1) / ref.norm(dim=-1)
        delta = (delta + step * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0.0, 1.0) - x
        deltas.append(delta)
    if tau is None:
        with torch.no_grad():
            tau = ttc_tau(xd, deltas[0].detach(), tau_features or victim_features)
    weights = ttc_weights(len(deltas) - 1, beta)
    mixed = sum(float(w) * dk for w, dk in zip(weights, deltas))
    on = tau < tau_thr
    chosen = torch.where(on.view(-1, *([1] * (x.ndim - 1))), mixed, deltas[0])
    return (x + chosen).clamp(0.0, 1.0), {"tau": tau, "counterattacked": on, "weights": weights}


def _embedding(clf: nn.Module, visual: nn.Module, precision: str) -> Features:
    """Unnormalised image features of ``visual`` on images in [0,1], through ``clf``'s resize and normalisation,
    in the counterattack's precision (fp32: autocast off, also inside an autocast block; fp16: float16 autocast)."""
    if not hasattr(clf, "prepare"):
        raise ZsrError("TTC needs the zero-shot classifier (with .visual and .prepare); got "
                       f"{type(clf).__name__}.")

    def f(z: torch.Tensor) -> torch.Tensor:
        kind = z.device.type
        ctx = torch.autocast(kind, dtype=torch.float16) if precision == "fp16" else torch.autocast(kind, enabled=False)
        with ctx:
            out = visual(clf.prepare(z))
        return (out[0] if isinstance(out, tuple) else out).float()

    return f


@DEFENSES.register("ttc")
class TTC(Defense):
    name = "ttc"
    paper = "Xing et al., CLIP is Strong Enough to Fight Back: Test-time Counterattacks towards Zero-shot " \
            "Adversarial Robustness of CLIP, CVPR 2025"
    description = "test-time counterattack: perturb each image away from its features (PGD-2 at 4/255) when random " \
                  "noise barely moves them (τ < 0.2), then classify with the victim's weights"
    notes = (
        ("TTC settings τ_thr/β/ε/step/steps as the paper (0.2, 2, 4/255, 1/255, 2); the victim's weights are "
         "another registered defense's (victim=clip: the original CLIP)"),
        "τ is measured with the original CLIP's visual encoder when the victim's weights are not the original's",
        ("zsrbench's choices: x+δ_k clamped to [0,1] after every counterattack step (the spec clamps x+δ₀ only); "
         "the counterattack runs in fp32 unless precision=fp16 (the official code's fp16)"),
        ("adaptive attacks: BPDA (identity) through the whole counterattack, EOT over δ₀; ttc-gate also attacks "
         "the gate (CE − λ·ReLU(τ_thr − τ))"),
    )
    inference_params = Params(
        defaults={"tau_thr": 0.2, "beta": 2.0, "eps": 4.0, "step": 1.0, "steps": 2, "victim": "clip",
                  "precision": "fp32"},
        help={"tau_thr": "counterattack only images whose τ (feature change under noise) is below this",
              "beta": "weights softmax(β·k) of the counterattack iterates δ_0..δ_N",
              "eps": "counterattack budget (L∞)", "step": "counterattack step size", "steps": "counterattack steps N",
              "victim": "the registered defense whose weights TTC defends (clip: the original CLIP)",
              "precision": "the counterattack's precision (fp16: the official code's; fp16 autocast on CUDA and CPU)"},
        per255=("eps", "step"), choices={"precision": ("fp32", "fp16")}, positive=("eps", "step"),
        non_negative=("tau_thr", "beta"),
    )
    test_time = TestTime(
        steps=(Step("counterattack", differentiable=False, random=True, surrogate="identity"),),
        notes=(("δ₀ ~ U[−ε, ε] is drawn per image and per call (EOT over it); the sign steps, the clamps and the "
                "τ < τ_thr gate have no useful gradient: BPDA takes x → x+Δ as the identity"),),
    )
    tau_parts: CLIPParts | None = None  # the original CLIP τ is measured on, when it is not the victim (load)
    tau_visual: nn.Module | None = None

    @classmethod
    def inference_config(cls, values: dict[str, Any]) -> dict[str, Any]:
        cfg = super().inference_config(values)
        victim_class(cfg["victim"])
        return cfg

    def victim(self) -> Defense:
        """The victim defense (an instance), whose ``load`` gives the weights TTC defends."""
        return instantiate(victim_class(self.inference["victim"]))

    def load(self, spec: LoadSpec, *, device: str = "cpu") -> CLIPParts:
        """The victim's model, loaded by the victim defense (``spec.checkpoint``: its weights); and, unless those
        are the original CLIP's, the original (``spec.model`` + ``spec.pretrained``, initialised from the same
        random state when there are no pretrained weights), whose visual encoder τ is measured with."""
        before = torch.random.get_rng_state()
        parts = self.victim().load(spec, device=device)
        self.tau_parts = self.tau_visual = None
        if DEFENSES.canonical(self.inference["victim"]) == "clip" and spec.checkpoint is None:
            return parts
        after = torch.random.get_rng_state()
        torch.random.set_rng_state(before)
        try:
            original = instantiate(DEFENSES.get("clip")).load(LoadSpec(model=spec.model, pretrained=spec.pretrained,
                                                                       allow_download=spec.allow_download),
                                                              device=device)
        finally:
            torch.random.set_rng_state(after)
        if original.tensors_sha256() == parts.tensors_sha256():
            return parts
        if (original.image_size, tuple(original.mean), tuple(original.std)) != \
                (parts.image_size, tuple(parts.mean), tuple(parts.std)):
            raise ZsrError(f"TTC measures τ with the original {spec.model} but the victim's model takes other inputs "
                           f"(image size {parts.image_size} vs {original.image_size}, or another normalisation); "
                           "pass --model naming the architecture the victim's checkpoint was fine-tuned from.")
        original.model.eval().requires_grad_(False)
        self.tau_parts, self.tau_visual = original, original.visual
        return parts

    def inference_identity(self) -> dict[str, Any] | None:
        out = super().inference_identity() or {"defense": self.name, "params": dict(self.inference)}
        if self.tau_parts is not None:
            out["tau_encoder_tensors_sha256"] = self.tau_parts.tensors_sha256()
        return out

    def _counter(self, x: torch.Tensor, clf: nn.Module, generator: torch.Generator,
                 delta0: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.inference
        fv = _embedding(clf, clf.visual, cfg["precision"])
        ftau = None if self.tau_visual is None else _embedding(clf, self.tau_visual, cfg["precision"])
        return ttc_counterattack(x, fv, ftau, eps=cfg["eps"] / 255.0, step=cfg["step"] / 255.0,
                                 steps=cfg["steps"], tau_thr=cfg["tau_thr"], beta=cfg["beta"], generator=generator,
                                 delta0=delta0)

    def defend(self, x: torch.Tensor, clf: nn.Module, generator: torch.Generator) -> torch.Tensor:
        """The victim's logits of ``x + Δ`` (the counterattack through :func:`bpda`: the identity backward)."""
        return clf(bpda(lambda z: self._counter(z, clf, generator)[0], x))

    def gate_tau(self, x: torch.Tensor, clf: nn.Module, generator: torch.Generator) -> torch.Tensor:
        """τ of images ``x`` for the δ₀ drawn from ``generator`` (as the next :meth:`defend` with a generator in
        this state draws it), differentiable in ``x``: what the gate-evasion attack raises."""
        cfg = self.inference
        visual = clf.visual if self.tau_visual is None else self.tau_visual
        noise = draw_noise(x, cfg["eps"] / 255.0, generator)
        return ttc_tau(x, start_delta(x, noise), _embedding(clf, visual, cfg["precision"]))


def victim_class(name: Any) -> type[Defense]:
    """The registered defense class ``name`` names, checked to be a model TTC can defend."""
    problem = None
    if not isinstance(name, str) or name not in DEFENSES:
        problem = "is not a registered defense"
    elif DEFENSES.canonical(name) == TTC.name:
        problem = "is TTC itself"
    elif DEFENSES.get(name).test_time is not None:
        problem = "is itself a test-time defense (TTC defends a model's weights, not another procedure)"
    if problem is not None:
        known = ", ".join(n for n in DEFENSES.names() if n != TTC.name and _weights_only(n))
        raise ZsrError(f"--set ttc.victim={name}: '{name}' {problem}. TTC counterattacks at test time in front of "
                       f"another defense's weights: pass one of {known} (zsrbench list defenses), e.g. "
                       "--set ttc.victim=tecoa with that defense's checkpoint, or leave it out for the original CLIP.")
    return DEFENSES.get(name)


def _weights_only(name: str) -> bool:
    try:
        return getattr(DEFENSES.get(name), "test_time", None) is None
    except ZsrError:  # a broken plugin
        return False


from zsrbench.defenses import ttc_attack  # noqa: F401  (registers the ttc-gate attack)
