"""`zsrbench audit`: run the checks of :mod:`zsrbench.audit` on one model under a protocol, record the verdict.

The model is named like `zsrbench run` names it (defense, model, checkpoint; trainable defenses of protocols
that allow it are fine-tuned on demand), or by one of its leaderboard entries. Each dataset contributes a
seeded subset of its test set (the protocol's ``quick`` subset where it has one, else ``DEFAULT_SAMPLES``; the
indices digest is recorded); only its clean-correct samples are attacked. The result is an ``audit`` entry in
the leaderboard (``<model>__audit__eps<k>__v<version>``, revisions like every entry); tables rank a model only
when its audit did not fail.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

import zsrbench
from zsrbench.audit import probes as A
from zsrbench.audit import verdicts as V
from zsrbench.defenses.identity import provenance
from zsrbench.attacks.base import eps_text
from zsrbench.data.base import indices_digest, select_indices
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.audits import check_verdicts
from zsrbench.leaderboard.schema import AuditCheck, AuditData, EntryModel, EntryProtocol, LeaderboardEntry
from zsrbench.models.classifier import make_classifier
from zsrbench.registry import ATTACKS, DATASETS
from zsrbench.evaluation.config import RunConfig, check_config, check_device
from zsrbench.defenses.identity import model_id
from zsrbench.defenses.test_time import TestTimeClassifier
from zsrbench.evaluation.model import prepare_model

DEFAULT_SAMPLES = 256  # per dataset, for protocols without a "quick" subset
SQUARE_QUERIES = 1000
NOISE_DRAWS = 10
EOT_PASSES = 10  # gradient samples per step when the model is randomised
RESTARTS = 3


@dataclass(frozen=True)
class AuditConfig:
    run: RunConfig  # the model, protocol, ε, datasets, device and leaderboard, as `zsrbench run` takes them
    n_samples: int | None = None  # per dataset (None: the protocol's quick subset size, else DEFAULT_SAMPLES)
    square_queries: int = SQUARE_QUERIES
    noise_draws: int = NOISE_DRAWS
    eot: int = EOT_PASSES
    batch_size: int | None = None


@dataclass
class AuditResult:
    entry: LeaderboardEntry
    path: Path | None = None  # the revision written (or reproduced)
    reproduced: bool = False

    @property
    def verdict(self) -> str:
        assert self.entry.audit is not None
        return self.entry.audit.verdict


@dataclass
class _Model:
    clf: torch.nn.Module
    base: torch.nn.Module


def _wrap(defense: Any, clf: torch.nn.Module) -> torch.nn.Module:
    wrap = getattr(defense, "wrap_classifier", None)
    return wrap(clf) if wrap is not None else clf


def check_audit_config(cfg: AuditConfig) -> Any:
    protocol, _, eps, _ = check_config(replace(cfg.run, attacks=("pgd",)))
    if protocol.base_model is None:
        raise ZsrError(
            f"Protocol '{protocol.name}' has no undefended base model, so the audit's transfer check has nothing to "
            "transfer from. Audit under a protocol with a pretrained base model (e.g. --protocol micro or tga16).")
    for name, value in (("--n-samples", cfg.n_samples), ("--square-queries", cfg.square_queries),
                        ("--noise-draws", cfg.noise_draws), ("--eot", cfg.eot), ("--batch-size", cfg.batch_size)):
        if value is not None and int(value) < 1:
            raise ZsrError(f"{name} must be at least 1; got {value}.")
    return protocol, eps


RULES_VERSION = 2  # 2: verdicts per dataset with one sample of slack, n/a where a check has no data


def _tallies() -> dict[str, V.Tally]:
    return {k: V.Tally() for k in ("gradient_health", "randomness", "eps_behaviour", "convergence", "fgsm_vs_pgd",
                                   "black_box", "transfer", "autoattack_flags", "nonfinite", "non_adaptive")}


def run_audit(cfg: AuditConfig, *, log: Callable[[str], None] | None = None) -> AuditResult:
    """Audit the model of ``cfg.run`` and (unless ``cfg.run.leaderboard_dir`` is None) record the audit entry.

    The datasets audited now are judged afresh; the others of the entry's previous revision (same model, defense
    code and rules) are carried over with their verdicts, so a narrower re-audit never drops evidence.
    """
    protocol, eps = check_audit_config(cfg)
    device = check_device(cfg.run.device)
    seed = protocol.seed if cfg.run.seed is None else cfg.run.seed
    t_start = time.perf_counter()
    defense, parts, _ = prepare_model(cfg.run, protocol, device=device, seed=seed, log=log)
    mid = model_id(defense, parts)
    base_cfg = RunConfig(defense=protocol.base_model, protocol=protocol.name, device=device)
    base_defense, base_parts, _ = prepare_model(base_cfg, protocol, device=device, seed=seed)
    base_id = model_id(base_defense, base_parts)
    n = cfg.n_samples or protocol.subsets.get("quick") or DEFAULT_SAMPLES
    bs = cfg.batch_size or cfg.run.batch_size or protocol.batch_size
    pgd = ATTACKS.get("pgd")
    pgd_params = pgd.config(**{k: v for k, v in protocol.attack_defaults.get("pgd", {}).items() if k in pgd.defaults})
    sweep = sorted({*protocol.eps_sweep, eps, V.THRESHOLDS["large_eps"]})
    tallies = _tallies()
    chance: dict[str, float] = {}
    datasets: dict[str, Any] = {}
    for name in cfg.run.datasets or protocol.datasets:
        evalset = DATASETS.get(name).build(cfg.run.data_root, image_size=parts.image_size, download=cfg.run.download)
        indices = select_indices(len(evalset), n, seed)
        x = torch.stack([evalset.dataset[i][0] for i in indices]).float().to(device)
        y = torch.tensor([int(evalset.dataset[i][1]) for i in indices], device=device)
        prompts = evalset.info.prompts()
        clf = _wrap(defense, make_classifier(parts, prompts, device=device)[0])
        base = _wrap(base_defense, make_classifier(base_parts, prompts, device=device)[0])
        chance[name] = 1.0 / evalset.info.num_classes
        if log:
            log(f"{name}: auditing {len(indices)} samples")
        _dataset(name, _Model(clf, base), x, y, np.asarray(indices), tallies, cfg, eps=eps, sweep=sweep,
                 pgd_params=pgd_params, seed=seed, batch_size=bs)
        tallies["eps_behaviour"].add(name, chance=chance[name])
        datasets[name] = {"n": len(indices), "n_total": len(evalset), "indices_digest": indices_digest(indices),
                          "n_correct": int(tallies["gradient_health"].per_dataset[name]["n_correct"]),
                          "chance": chance[name]}
    _recorded(cfg.run.leaderboard_dir, protocol, mid, eps, list(datasets), tallies)
    origin = provenance(defense)
    carried = _carry(cfg.run.leaderboard_dir, protocol, mid, eps, origin, datasets, tallies)
    checks = _judge(tallies, sweep, chance, cfg, base_id)
    verdict, failed, warned = V.summarise(checks)
    randomised = V.is_randomised(checks[1])
    settings = {"n_samples": n, "seed": seed, "eps": eps, "eps_sweep": sweep, "pgd": pgd_params,
                "restarts": RESTARTS, "square_queries": cfg.square_queries, "noise_draws": cfg.noise_draws,
                "eot": cfg.eot if randomised else 1, "batch_size": bs, "thresholds": dict(V.THRESHOLDS),
                "rules": RULES_VERSION, "datasets": list(datasets)}
    from zsrbench.evaluation.records import environment

    env = environment(device)
    data = AuditData(verdict=verdict, randomised=randomised, failed=failed, warned=warned,
                     checks=checks, settings=settings, base_model=base_id, datasets={**carried, **datasets},
                     dataset_verdicts=check_verdicts(checks),
                     env={"python": env.python, "torch": env.torch, "device": env.device},
                     timing={"wall_s": round(time.perf_counter() - t_start, 3)})
    entry = audit_entry(protocol, mid, defense, parts, eps, data)
    result = AuditResult(entry=entry)
    if cfg.run.leaderboard_dir is not None:
        from zsrbench.leaderboard.audits import add_audit

        result.path, result.reproduced = add_audit(cfg.run.leaderboard_dir, entry)
    return result


def _judge(t: dict[str, V.Tally], sweep: Sequence[float], chance: dict[str, float], cfg: AuditConfig,
           base_id: str) -> list[AuditCheck]:
    noise = V.prediction_noise(t["randomness"])
    return [V.judge_gradient(t["gradient_health"]), V.judge_randomness(t["randomness"]),
            V.judge_eps(t["eps_behaviour"], sweep, chance, noise), V.judge_convergence(t["convergence"], noise),
            V.judge_fgsm(t["fgsm_vs_pgd"], noise),
            V.judge_black_box(t["black_box"], cfg.square_queries, cfg.noise_draws, noise),
            V.judge_transfer(t["transfer"], base_id, noise), V.judge_autoattack_flags(t["autoattack_flags"]),
            V.judge_nonfinite(t["nonfinite"])] + ([V.judge_non_adaptive(t["non_adaptive"])]
                                                  if t["non_adaptive"].per_dataset else [])


def audit_entry(protocol: Any, mid: str, defense: Any, parts: Any, eps: float, data: AuditData) -> LeaderboardEntry:
    from zsrbench.leaderboard.entries import measured_slug, now_utc

    et = eps_text(eps)
    return LeaderboardEntry(
        kind="audit", entry=measured_slug(mid, "audit", et, protocol.version), revision=1, created_at=now_utc(),
        protocol=EntryProtocol(name=protocol.name, version=protocol.version, datasets=list(protocol.datasets),
                               train_dataset=protocol.train_dataset, normalised_average=protocol.normalised_average),
        model=EntryModel(id=mid, name=mid, defense=defense.name, architecture=parts.base_name(),
                         checkpoint_sha256=parts.source.get("checkpoint_sha256") or parts.source.get("weights_sha256"),
                         tensors_sha256=parts.tensors_sha256(), origin=provenance(defense),
                         inference=defense.inference_identity()),
        suite="audit", eps=eps / 255.0, eps_text=et, zsrbench_version=zsrbench.__version__, audit=data)


def _carry(leaderboard_dir: str | None, protocol: Any, mid: str, eps: float, origin: dict[str, str],
           audited: dict[str, Any], tallies: dict[str, V.Tally]) -> dict[str, Any]:
    """The datasets of the audit entry's newest revision that this audit did not audit: their rows go into
    ``tallies`` with the verdicts they had; returns their dataset info (marked ``carried_from``). Nothing is
    carried from an audit of other defense code or judged by other rules."""
    from zsrbench.leaderboard.entries import code_key, measured_slug, rev_name
    from zsrbench.leaderboard.reading import _previous

    if leaderboard_dir is None:
        return {}
    edir = Path(leaderboard_dir) / protocol.name / measured_slug(mid, "audit", eps_text(eps), protocol.version)
    if not edir.is_dir():
        return {}
    prev = _previous(edir).entry
    a = prev.audit if prev is not None else None
    if a is None or code_key(prev.model.origin) != code_key(origin) or a.settings.get("rules") != RULES_VERSION:
        return {}
    out: dict[str, Any] = {}
    for ds, info in a.datasets.items():
        if ds in audited:
            continue
        out[ds] = {**info, "carried_from": info.get("carried_from") or rev_name(prev.revision)}
        for c in a.checks:
            if ds in c.per_dataset and c.name in tallies:
                tallies[c.name].carry(ds, dict(c.per_dataset[ds]), c.samples.get(ds, ()))
    return out


def _recorded(leaderboard_dir: str | None, protocol: Any, mid: str, eps: float, datasets: Sequence[str],
              tallies: dict[str, V.Tally]) -> None:
    """Per audited dataset, from this model's leaderboard results at this ε: the AutoAttack suites recorded and
    their warnings (the ``autoattack_flags`` rows) and the samples with non-finite logits (``nonfinite``)."""
    from zsrbench.leaderboard.reading import load_store

    suites: dict[str, list[str]] = {d: [] for d in datasets}
    items: dict[str, list[str]] = {d: [] for d in datasets}
    nonfinite = {d: 0 for d in datasets}
    if leaderboard_dir is not None and Path(leaderboard_dir).is_dir():
        for le in load_store(leaderboard_dir, protocol.name).entries:
            e = le.entry
            if (e.kind != "measured" or e.model.id != mid or e.eps_text != eps_text(eps)
                    or e.protocol.version != protocol.version):
                continue
            assert e.measured is not None
            aa = any(a.family == "autoattack" for a in e.measured.attacks)
            for ds, m in e.measured.datasets.items():
                if ds not in suites:
                    continue
                nonfinite[ds] += m.metrics.n_nonfinite
                if aa:
                    suites[ds].append(e.suite)
                    items[ds] += [f"{e.suite}: {w}" for w in m.flags.autoattack_warnings]
    for ds in datasets:
        tallies["autoattack_flags"].add(ds, suites=len(suites[ds]), warnings=len(items[ds]), items=items[ds][:20])
        tallies["nonfinite"].add(ds, recorded=nonfinite[ds])


# ------------------------------------------------------------------------------------------------ one dataset
def _dataset(name: str, m: _Model, x: torch.Tensor, y: torch.Tensor, positions: np.ndarray, t: dict[str, V.Tally],
             cfg: AuditConfig, *, eps: float, sweep: Sequence[float], pgd_params: dict[str, Any], seed: int,
             batch_size: int) -> bool:
    """Measure every check on one dataset into the tallies ``t``; returns whether the model looked randomised."""
    pred, finite = A.predict(m.clf, x, batch_size)
    correct = (pred == y) & finite
    nonfinite = (~finite).cpu().numpy()
    idx = correct.nonzero().squeeze(1)
    xc, yc, pos = x[idx], y[idx], positions[idx.cpu().numpy()]
    nc = int(idx.numel())
    diff, flips = A.repeat_disagreement(m.clf, x, batch_size)
    randomised = diff > V.THRESHOLDS["random_logit_tol"]
    t["randomness"].add(name, n=int(x.shape[0]), max_rel_logit_change=diff, flipped=int(round(flips * x.shape[0])))
    zero, bad = A.gradient_status(m.clf, xc, yc, batch_size)
    t["gradient_health"].add(name, n_correct=nc, zero=int(zero.sum()), nonfinite=int(bad.sum()))
    params = dict(pgd_params)
    if randomised and "eot" in ATTACKS.get("pgd").defaults:
        params["eot"] = cfg.eot
    adv_bad = np.zeros(nc, dtype=bool)

    def pgd_robust(model: torch.nn.Module, e: float, p: dict[str, Any], salt: int, judge: torch.nn.Module | None = None) -> np.ndarray:
        """Robust flags of the clean-correct samples under PGD on ``model`` (judged on ``judge``, default: it)."""
        x_adv = _attack(model, xc, yc, e, p, seed + salt, batch_size)
        return _robust(judge or model, x_adv, yc, batch_size, adv_bad)

    x_ref = _attack(m.clf, xc, yc, eps, params, seed, batch_size)
    robust = _robust(m.clf, x_ref, yc, batch_size, adv_bad)
    if isinstance(m.clf, TestTimeClassifier):  # what the test-time paper's way of attacking would have reported
        bare = pgd_robust(m.clf.attack_target, eps, dict(pgd_params), 6, judge=m.clf)
        t["non_adaptive"].add(name, n=nc, adaptive_robust=int(robust.sum()), non_adaptive_robust=int(bare.sum()))
    if randomised:  # how often the robust flags themselves change between passes: the checks' noise floor
        _, adv_flips = A.repeat_disagreement(m.clf, x_ref, batch_size)
        t["randomness"].add(name, adv_flipped=int(round(adv_flips * nc)), n_attacked=nc)
    ratio = float(params.get("step", eps)) / eps
    sweep_counts = {}
    for e in sweep:
        if e == eps:
            r = robust
        else:
            p = {**params, "step": e * min(ratio, 0.25)}
            r = pgd_robust(m.clf, e, p, 1 + int(e * 1000))
        sweep_counts[f"robust@{e:g}"] = int(r.sum())
    t["eps_behaviour"].add(name, dataset=name, n=nc, **sweep_counts)
    more = pgd_robust(m.clf, eps, {**params, "steps": 2 * int(params.get("steps", 20))}, 2)
    restarts = pgd_robust(m.clf, eps, {**params, "restarts": RESTARTS}, 3)
    t["convergence"].add(name, n=nc, robust=int(robust.sum()), robust_2x_steps=int(more.sum()),
                         robust_restarts=int(restarts.sum()))
    fg = _robust(m.clf, A.batched(lambda a, b: A.fgsm(m.clf, a, b, eps / 255.0), xc, yc, batch_size), yc, batch_size,
                 adv_bad)
    fgsm_only = robust & ~fg
    t["fgsm_vs_pgd"].add(name, n=nc, robust=int(robust.sum()), robust_fgsm=int(fg.sum()), fgsm_only=int(fgsm_only.sum()))
    t["fgsm_vs_pgd"].listed(name, pos[fgsm_only])
    _black_box(name, m, xc, yc, pos, robust, t["black_box"], cfg, eps=eps, seed=seed, batch_size=batch_size,
               adv_bad=adv_bad)
    transfer = pgd_robust(m.base, eps, dict(pgd_params), 4, judge=m.clf)
    beyond = robust & ~transfer
    t["transfer"].add(name, pgd_robust=int(robust.sum()), broken_beyond_pgd=int(beyond.sum()))
    t["transfer"].listed(name, pos[beyond])
    nonfinite[idx.cpu().numpy()] |= adv_bad
    t["nonfinite"].add(name, n=int(x.shape[0]), nonfinite=int(nonfinite.sum()))
    t["nonfinite"].listed(name, positions[nonfinite])
    return bool(randomised)


def _black_box(name: str, m: _Model, xc: torch.Tensor, yc: torch.Tensor, pos: np.ndarray, robust: np.ndarray,
               tally: V.Tally, cfg: AuditConfig, *, eps: float, seed: int, batch_size: int, adv_bad: np.ndarray) -> None:
    sel = np.flatnonzero(robust)
    broken = np.zeros(len(robust), dtype=bool)
    if len(sel):
        xs, ys = xc[torch.as_tensor(sel, device=xc.device)], yc[torch.as_tensor(sel, device=yc.device)]
        sub_bad = np.zeros(len(sel), dtype=bool)
        x_sq = A.batched(lambda a, b: A.square(m.clf, a, b, eps / 255.0, queries=cfg.square_queries, seed=seed),
                         xs, ys, batch_size)
        ok = _robust(m.clf, x_sq, ys, batch_size, sub_bad)
        g = torch.Generator(device=xs.device).manual_seed(seed + 5)
        for _ in range(cfg.noise_draws):
            ok &= _robust(m.clf, A.uniform_noise(xs, eps / 255.0, g), ys, batch_size, sub_bad)
        broken[sel] = ~ok
        adv_bad[sel] |= sub_bad
    tally.add(name, pgd_robust=int(robust.sum()), broken_beyond_pgd=int(broken.sum()))
    tally.listed(name, pos[broken])


def _attack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any], seed: int,
            batch_size: int) -> torch.Tensor:
    """PGD (the registered ``pgd`` attack, protocol settings) on ``model``; the adversarial images."""
    spec = ATTACKS.get("pgd")
    outs = []
    for i in range(0, x.shape[0], batch_size):
        out = spec(model, x[i:i + batch_size], y[i:i + batch_size], eps=eps, seed=seed + i, **params)
        outs.append(out.x_adv.detach())
    return torch.cat(outs) if outs else x


def _robust(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor, batch_size: int,
            nonfinite: np.ndarray) -> np.ndarray:
    """Still correct on ``x_adv`` (NaN/inf logits are wrong; they are marked in ``nonfinite``)."""
    if x_adv.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    pred, finite = A.predict(model, x_adv, batch_size)
    nonfinite |= (~finite).cpu().numpy()
    return (pred == y).cpu().numpy()
