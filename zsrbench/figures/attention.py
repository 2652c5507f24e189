"""`zsrbench attention`: text-guided attention maps of the base CLIP and of defenses, clean and under attack, as a
figure; and the attention shift ``‖A(x′) − A(x)‖₂`` per model and dataset, recorded under the results folder.

Models are loaded exactly as ``zsrbench run`` loads them (:func:`zsrbench.evaluation.model.prepare_model`: trainable
defenses of a protocol that allows it are fine-tuned on demand and cached); the frozen base CLIP is the
protocol's undefended model (``Protocol.base_model``, loaded with the protocol's defaults, as the audit's
transfer check loads it). Each model is attacked white-box: ``x′`` is the chosen attack (the registry's, with
the protocol's parameters and ε, seeded per batch as the runner seeds it) against that model's classifier as
``Defense.wrap_classifier`` gives it.

The maps are those of :mod:`zsrbench.defenses.attention` for the true class, guided by the class embedding of
the zero-shot head (the dataset's own prompts): per-image min-max normalised over the patches, bilinear to
224×224. Comp-TGA also gets its non-class map (its ``nonclass_template`` for the true class) and the
complementary map ``A_class ⊙ (1 − A_nonclass)``.

Samples: ``n_shift`` seeded images of the dataset's test set (:func:`zsrbench.data.base.select_indices`) give the
shift; the ``n_images`` drawn are the seeded subset of the same seed, which lies inside them (the first
``n_images`` of the same permutation), so the figure shows maps of the same computation and the shift does not
depend on how many images are drawn.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

import zsrbench
from zsrbench import paths
from zsrbench.attacks.base import AttackSpec, eps_text
from zsrbench.defenses import attention as att
from zsrbench.errors import ZsrError
from zsrbench.figures.output import Output, figure_files, new_figure, resolve_outputs, write_files
from zsrbench.figures.shift import attention_shift, summarise
from zsrbench.leaderboard.shift_record import (
    AttentionShiftRecord, MapDefinition, ShiftProtocol, ShiftStats, shift_path, to_json,
)
from zsrbench.protocols import Protocol
from zsrbench.evaluation.config import RunConfig, check_config, check_results_dir, run_variant

DEFAULT_N_IMAGES = 3
DEFAULT_N_SHIFT = 64
DEFAULT_NORM = "token_axis"
MAP_SIZE = att.DEFAULT_SIZE
OVERLAY_ALPHA = 0.5
CMAP = "jet"
ADVERSARY = "white-box: x′ is the attack against this model's own classifier (Defense.wrap_classifier)"
CLASS_TEXT = "the true class's embedding in the zero-shot head (the dataset's prompts, L2-normalised)"


@dataclass(frozen=True)
class AttentionConfig:
    """What `zsrbench attention` draws and measures. ``None`` means the protocol's default."""

    defenses: tuple[str, ...] = ("clip",)
    protocol: str = "micro"
    dataset: str | None = None  # None: the protocol's first zero-shot dataset
    attack: str = "pgd"
    eps: float | None = None  # units of 1/255
    attack_params: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    pretrained: str | None = None
    checkpoint: str | None = None  # only with a single defense
    checkpoint_sha256: str | None = None
    trust_checkpoint: bool = False
    data_root: str | None = None
    download: bool = False
    n_images: int = DEFAULT_N_IMAGES
    n_shift: int = DEFAULT_N_SHIFT
    seed: int | None = None
    norm: str = DEFAULT_NORM
    batch_size: int | None = None
    device: str | None = None
    results_dir: str | None = field(default_factory=lambda: str(paths.results_dir()))  # None: record nothing
    outs: tuple[str, ...] = ()  # figure files (.png / .svg); empty: no figure
    formats: tuple[str, ...] | None = None  # --format: one file per format


@dataclass(frozen=True)
class AttentionPlan:
    """A checked :class:`AttentionConfig` with every default resolved."""

    cfg: AttentionConfig
    protocol: Protocol
    dataset: str
    spec: AttackSpec
    eps: float  # units of 1/255
    params: dict[str, Any]
    seed: int
    device: str
    batch_size: int
    variant: str | None
    outputs: tuple[Output, ...]


def default_dataset(protocol: Protocol) -> str:
    """The protocol's first zero-shot dataset (its first dataset when all are source tasks)."""
    zero_shot = protocol.zero_shot_datasets()
    return zero_shot[0] if zero_shot else protocol.datasets[0]


def run_config(cfg: AttentionConfig, defense: str, dataset: str) -> RunConfig:
    """The :class:`RunConfig` that `zsrbench run` would evaluate ``defense`` with on ``dataset``."""
    return RunConfig(defense=defense, protocol=cfg.protocol, attacks=(cfg.attack,), eps=cfg.eps,
                     attack_params=dict(cfg.attack_params), model=cfg.model, pretrained=cfg.pretrained,
                     checkpoint=cfg.checkpoint, checkpoint_sha256=cfg.checkpoint_sha256,
                     trust_checkpoint=cfg.trust_checkpoint, datasets=(dataset,), data_root=cfg.data_root,
                     download=cfg.download, seed=cfg.seed, batch_size=cfg.batch_size, device=cfg.device,
                     results_dir=cfg.results_dir or str(paths.results_dir()), leaderboard_dir=None)


def _whole(flag: str, value: Any, least: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
        raise ZsrError(f"{flag} must be a whole number ≥ {least}; got {value!r}.")


def make_attention_plan(cfg: AttentionConfig) -> AttentionPlan:
    """Check every name and value of ``cfg`` before a model is built or anything is written."""
    from zsrbench.registry import PROTOCOLS, load_builtins

    load_builtins()
    if not cfg.defenses:
        raise ZsrError("No defense given: pass --defense NAME or a comma-separated list such as comp_tga,clip "
                       "(see `zsrbench list defenses`).")
    twice = sorted({d for d in cfg.defenses if cfg.defenses.count(d) > 1})
    if twice:
        raise ZsrError(f"--defense lists {', '.join(twice)} more than once; name each defense once.")
    protocol: Protocol = PROTOCOLS.get(cfg.protocol)
    dataset = cfg.dataset or default_dataset(protocol)
    if dataset not in protocol.datasets:
        raise ZsrError(f"Protocol '{protocol.name}' has no dataset '{dataset}'; pass --dataset with one of: "
                       f"{', '.join(protocol.datasets)}.")
    if any(sep in cfg.attack for sep in ",+") or not cfg.attack.strip():
        raise ZsrError(f"--attack takes one attack (e.g. pgd or cw), not a suite; got {cfg.attack!r}.")
    if cfg.checkpoint is not None and len(cfg.defenses) > 1:
        raise ZsrError("--checkpoint names the weights of one defense, but --defense lists "
                       f"{len(cfg.defenses)}; pass a single --defense with it.")
    for flag, value, least in (("--n-images", cfg.n_images, 1), ("--n-shift", cfg.n_shift, 1),
                               ("--batch-size", cfg.batch_size, 1), ("--seed", cfg.seed, 0)):
        _whole(flag, value, least)
    if cfg.n_images > cfg.n_shift:
        raise ZsrError(f"--n-images ({cfg.n_images}) exceeds --n-shift ({cfg.n_shift}): the images drawn are taken "
                       "from those the shift is measured on. Draw fewer images or raise --n-shift.")
    if cfg.norm not in att.NORMS:
        raise ZsrError(f"--norm must be one of {', '.join(att.NORMS)} (token_axis: the official TGA-ZSR code); "
                       f"got {cfg.norm!r}.")
    checked = [check_config(run_config(cfg, d, dataset)) for d in cfg.defenses]
    _, specs, eps, params = checked[0]
    outputs = tuple(resolve_outputs(cfg.outs, cfg.formats)) if cfg.outs else ()
    if cfg.results_dir is not None:
        check_results_dir(cfg.results_dir)
    from zsrbench.evaluation.config import check_device

    seed = protocol.seed if cfg.seed is None else cfg.seed
    base = run_variant(run_config(cfg, cfg.defenses[0], dataset), protocol, specs, params, seed, None)
    extra = ([] if cfg.n_shift == DEFAULT_N_SHIFT else [f"n{cfg.n_shift}"]) + \
        ([] if cfg.norm == DEFAULT_NORM else [cfg.norm])
    variant = "__".join([*([base] if base else []), *extra]) or None
    return AttentionPlan(cfg=cfg, protocol=protocol, dataset=dataset, spec=specs[0], eps=eps,
                         params=params[specs[0].name], seed=seed, device=check_device(cfg.device),
                         batch_size=cfg.batch_size or protocol.batch_size, variant=variant, outputs=outputs)


# --- maps of one batch (pure functions of tensors) -------------------------------------------------------------


def attention_maps(clf: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str = DEFAULT_NORM,
                   size: int = MAP_SIZE, nonclass_head: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The true-class maps [B, size, size] of a :class:`~zsrbench.models.ZeroShotClassifier` on images ``x``:
    ``"class"`` (guided by ``clf.head[y]``) and, given a non-class head, ``"nonclass"`` and ``"comp"``
    (Comp-TGA's ``A_class ⊙ (1 − A_nonclass)``)."""
    with torch.no_grad():
        _, feats = att.projected_tokens(clf, x)
        text = clf.head[y]
        maps = {"class": att.text_guided_attention(feats, text, size=size, norm=norm)}
        if nonclass_head is not None:
            other = nonclass_head.to(text.device)[y]
            maps["nonclass"] = att.text_guided_attention(feats, other, size=size, norm=norm)
            maps["comp"] = att.complementary_attention(feats, text, other, size=size, norm=norm)
    return {k: v.reshape(-1, size, size) for k, v in maps.items()}


def nonclass_template(defense: Any) -> str | None:
    """The non-class prompt of a defense whose attention is complementary (Comp-TGA), else None."""
    template = getattr(getattr(defense, "hp", None), "nonclass_template", None)
    return template if isinstance(template, str) else None


# --- measuring the models ------------------------------------------------------------------------------------


@dataclass
class ModelMaps:
    """One model's maps of the drawn images and its shifts over all ``n_shift`` images."""

    label: str
    model_id: str
    defense: str
    is_base: bool
    clean: dict[str, np.ndarray]  # kind -> [n_images, S, S]
    adv: dict[str, np.ndarray]
    x_adv: np.ndarray  # [n_images, 3, H, W] in [0, 1]
    pred_clean: np.ndarray  # [n_images]
    pred_adv: np.ndarray
    shifts: dict[str, np.ndarray]  # kind -> [n_shift] ("class", and "comp" for Comp-TGA)
    clean_correct: int
    robust: int
    record: AttentionShiftRecord | None = None
    path: Path | None = None

    @property
    def kinds(self) -> list[str]:
        return list(self.clean)


@dataclass
class _Loaded:
    label: str
    defense: Any
    parts: Any
    checkpoint: str | None
    model_id: str
    is_base: bool


@dataclass
class AttentionResult:
    plan: AttentionPlan
    models: list[ModelMaps]
    shift_indices: list[int]
    drawn_indices: list[int]
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_models(plan: AttentionPlan, log: Callable[[str], None] | None = None,
                progress: bool = False) -> tuple[list[_Loaded], list[str]]:
    """The protocol's base model (when it has one) and each defense, loaded as `zsrbench run` loads them; a
    defense whose model is the base model (the same tensors) is shown once, as the base."""
    from zsrbench.defenses.identity import model_id
    from zsrbench.evaluation.model import prepare_model

    cfg, protocol = plan.cfg, plan.protocol
    loaded: list[_Loaded] = []
    notes: list[str] = []
    if protocol.base_model is not None:
        base_cfg = RunConfig(defense=protocol.base_model, protocol=protocol.name, device=plan.device)
        d, parts, ck = prepare_model(base_cfg, protocol, device=plan.device, seed=plan.seed, progress=progress, log=log)
        loaded.append(_Loaded(f"{d.name} (base)", d, parts, ck, model_id(d, parts), True))
    else:
        notes.append(f"protocol {protocol.name} has no undefended base model; only the defenses are shown")
    for name in cfg.defenses:
        d, parts, ck = prepare_model(run_config(cfg, name, plan.dataset), protocol, device=plan.device,
                                     seed=plan.seed, progress=progress, log=log)
        mid = model_id(d, parts)
        if any(m.model_id == mid for m in loaded):
            notes.append(f"{name} is the same model as {next(m.label for m in loaded if m.model_id == mid)} "
                         f"({mid}); shown once")
            continue
        loaded.append(_Loaded(d.name, d, parts, ck, mid, False))
    return loaded, notes


def _batch(evalset: Any, indices: Sequence[int], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    items = [evalset.dataset[i] for i in indices]
    x = torch.stack([torch.as_tensor(im) for im, _ in items]).float().to(device)
    y = torch.tensor([int(lbl) for _, lbl in items], device=device)
    return x, y


def measure(plan: AttentionPlan, m: _Loaded, evalset: Any, indices: Sequence[int],
            drawn: Sequence[int]) -> tuple[ModelMaps, dict[str, Any]]:
    """Attack ``m`` on the ``indices`` images in batches (seeded as the runner seeds them) and measure its maps;
    keep the maps of the ``drawn`` ones. Returns the maps and the text head's info."""
    from zsrbench.evaluation.unit import batch_seed
    from zsrbench.models.classifier import make_classifier, text_head
    from zsrbench.evaluation.units import unit_bounds

    device, spec = plan.device, plan.spec
    clf, head_info = make_classifier(m.parts, evalset.info.prompts(), device=device)
    attacked = m.defense.wrap_classifier(clf)
    template = nonclass_template(m.defense)
    nonclass = None
    if template is not None:
        nonclass, _ = text_head(m.parts, [[template.format(c)] for c in evalset.info.classnames], device=device)
    where = {int(i): k for k, i in enumerate(indices)}
    keep = [where[int(i)] for i in drawn]
    shifts: dict[str, list[torch.Tensor]] = {}
    kept: dict[str, dict[int, Any]] = {"clean": {}, "adv": {}, "x_adv": {}, "pred_clean": {}, "pred_adv": {}}
    correct = robust = 0
    for start, stop in unit_bounds(len(indices), plan.batch_size):
        x, y = _batch(evalset, indices[start:stop], device)
        out = spec(attacked, x, y, eps=plan.eps, seed=batch_seed(plan.seed, spec.name, start), **plan.params)
        x_adv = out.x_adv.detach().to(device)
        with torch.no_grad():
            pred_clean = attacked(x).argmax(1)
            pred_adv = attacked(x_adv).argmax(1)
        ok = pred_clean == y
        correct += int(ok.sum())
        robust += int((ok & ~out.success.to(device)).sum())
        clean_maps = attention_maps(clf, x, y, norm=plan.cfg.norm, nonclass_head=nonclass)
        adv_maps = attention_maps(clf, x_adv, y, norm=plan.cfg.norm, nonclass_head=nonclass)
        for kind in ("class", "comp"):
            if kind in clean_maps:
                shifts.setdefault(kind, []).append(attention_shift(clean_maps[kind], adv_maps[kind]).cpu())
        for pos in (p for p in keep if start <= p < stop):
            r = pos - start
            kept["clean"][pos] = {k: v[r].cpu().numpy() for k, v in clean_maps.items()}
            kept["adv"][pos] = {k: v[r].cpu().numpy() for k, v in adv_maps.items()}
            kept["x_adv"][pos] = x_adv[r].cpu().numpy()
            kept["pred_clean"][pos] = int(pred_clean[r])
            kept["pred_adv"][pos] = int(pred_adv[r])
    kinds = list(kept["clean"][keep[0]])  # (n_images >= 1 is checked)
    maps = ModelMaps(
        label=m.label, model_id=m.model_id, defense=m.defense.name, is_base=m.is_base,
        clean={k: np.stack([kept["clean"][p][k] for p in keep]) for k in kinds},
        adv={k: np.stack([kept["adv"][p][k] for p in keep]) for k in kinds},
        x_adv=np.stack([kept["x_adv"][p] for p in keep]),
        pred_clean=np.array([kept["pred_clean"][p] for p in keep]),
        pred_adv=np.array([kept["pred_adv"][p] for p in keep]),
        shifts={k: torch.cat(v).numpy().astype(np.float64) for k, v in shifts.items()},
        clean_correct=correct, robust=robust)
    return maps, head_info


def _stats(values: np.ndarray) -> ShiftStats:
    s = summarise(values)
    return ShiftStats(n=s.n, mean=s.mean, se=s.se, std=s.std, values=[float(v) for v in values])


def shift_record(plan: AttentionPlan, m: _Loaded, maps: ModelMaps, evalset: Any, indices: Sequence[int],
                 head_info: dict[str, Any], base_id: str | None, wall_s: float) -> AttentionShiftRecord:
    """The attention-shift record of one model on the plan's dataset."""
    from zsrbench.data.base import indices_digest
    from zsrbench.leaderboard.schema import AttackConfig
    from zsrbench.evaluation.records import environment, git_sha, model_info

    info = evalset.info
    template = nonclass_template(m.defense)
    return AttentionShiftRecord(
        zsrbench_version=zsrbench.__version__, git_sha=git_sha(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model=model_info(m.model_id, m.defense, m.parts, m.checkpoint, head_info["text_tower_sha256"]),
        base_model=None if m.is_base else base_id,
        protocol=ShiftProtocol(name=plan.protocol.name, version=plan.protocol.version, dataset=plan.dataset,
                               split=info.split, n_total=len(evalset), n_samples=len(indices), seed=plan.seed,
                               indices_digest=indices_digest(indices), input_size=m.parts.image_size,
                               eps=plan.eps / 255.0, eps_text=eps_text(plan.eps), batch_size=plan.batch_size,
                               variant=plan.variant),
        attack=AttackConfig(name=plan.spec.name, family=plan.spec.family, params=dict(plan.params)),
        adversary=ADVERSARY,
        map=MapDefinition(map="text_guided_attention" + (" + complementary" if template else ""), norm=plan.cfg.norm,
                          size=MAP_SIZE, upsampling="bilinear, align_corners=False, from the √P×√P patch grid",
                          minmax=f"per image over the patches, before upsampling (denominator ≥ {att.MINMAX_EPS:g})",
                          text=CLASS_TEXT, templates_digest=info.templates_digest(), nonclass_template=template,
                          distance="plain L2 over the flattened size×size map, clean vs adversarial image"),
        shift=_stats(maps.shifts["class"]),
        complementary_shift=_stats(maps.shifts["comp"]) if "comp" in maps.shifts else None,
        counts={"clean_correct": maps.clean_correct, "robust": maps.robust},
        env=environment(plan.device), timing={"wall_s": round(wall_s, 3)})


def run_attention(cfg: AttentionConfig, *, log: Callable[[str], None] | None = None,
                  progress: bool = False) -> AttentionResult:
    """Measure and draw: load the models, attack each on the seeded images, compute their maps and shifts, then
    write the records (unless ``cfg.results_dir`` is None) and the figure files, all or nothing."""
    from zsrbench.data.base import select_indices
    from zsrbench.registry import DATASETS
    from zsrbench.evaluation.config import set_matmul_precision

    plan = make_attention_plan(cfg)
    set_matmul_precision("fp32")
    loaded, notes = load_models(plan, log, progress)
    builder = DATASETS.get(plan.dataset)
    evalsets: dict[int, Any] = {}
    first = None
    models: list[ModelMaps] = []
    base_id = next((m.model_id for m in loaded if m.is_base), None)
    indices: list[int] = []
    drawn: list[int] = []
    for m in loaded:
        size = m.parts.image_size
        if size not in evalsets:
            evalsets[size] = builder.build(cfg.data_root, image_size=size, download=cfg.download)
        evalset = evalsets[size]
        if first is None:
            first = evalset
        indices = select_indices(len(evalset), cfg.n_shift, plan.seed)
        drawn = select_indices(len(evalset), min(cfg.n_images, len(indices)), plan.seed)
        if log:
            log(f"{m.label}: {plan.spec.name} ε={eps_text(plan.eps)} on {len(indices)} images of {plan.dataset}")
        t0 = time.perf_counter()
        maps, head_info = measure(plan, m, evalset, indices, drawn)
        if cfg.results_dir is not None:
            maps.record = shift_record(plan, m, maps, evalset, indices, head_info, base_id, time.perf_counter() - t0)
            maps.path = shift_path(cfg.results_dir, maps.record)
        models.append(maps)
    result = AttentionResult(plan=plan, models=models, shift_indices=list(indices), drawn_indices=list(drawn),
                             notes=notes)
    files = [(mm.path, to_json(mm.record)) for mm in models if mm.record is not None and mm.path is not None]
    if plan.outputs:
        assert first is not None
        fig = draw_attention(result, first)
        files += figure_files(fig, plan.outputs)
    write_files(files, option="--out" if plan.outputs else "--results-dir")
    result.figures = [o.path for o in plan.outputs]
    return result


# --- the figure ----------------------------------------------------------------------------------------------

KIND_TITLES = {"class": "A", "nonclass": "A_non", "comp": "A_comp"}


def _image(a: np.ndarray) -> np.ndarray:
    """[3, H, W] in [0, 1] → [H, W, 3] for imshow."""
    return np.clip(np.transpose(np.asarray(a, dtype=np.float32), (1, 2, 0)), 0.0, 1.0)


def _tile(ax: Any, image: np.ndarray, overlay: np.ndarray | None = None) -> None:
    s = MAP_SIZE
    ax.imshow(_image(image), extent=(0, s, s, 0), interpolation="bilinear")
    if overlay is not None:
        ax.imshow(overlay, extent=(0, s, s, 0), cmap=CMAP, vmin=0.0, vmax=1.0, alpha=OVERLAY_ALPHA,
                  interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(0, s)
    ax.set_ylim(s, 0)


def _corner(ax: Any, text: str, *, top: bool = False) -> None:
    ax.text(0.03, 0.97 if top else 0.03, text, transform=ax.transAxes, fontsize=6.5,
            va="top" if top else "bottom", ha="left",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.85, "linewidth": 0})


def _columns(models: Sequence[ModelMaps]) -> list[tuple[ModelMaps, str, str | None]]:
    """(model, "x_adv" | "clean" | "adv", map kind) per figure column after the image column."""
    cols: list[tuple[ModelMaps, str, str | None]] = []
    for m in models:
        cols.append((m, "x_adv", None))
        for kind in m.kinds:
            cols += [(m, "clean", kind), (m, "adv", kind)]
    return cols


def draw_attention(result: AttentionResult, evalset: Any):
    """The figure: per drawn image a row with the image, then per model its adversarial image and its maps on
    the clean and on the adversarial image (overlaid), one shared colour scale."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    plan, models = result.plan, result.models
    names = evalset.info.classnames
    drawn = result.drawn_indices
    cols = _columns(models)
    n_rows, n_cols = len(drawn), 1 + len(cols)
    width = 1.45 * n_cols + 0.9
    lines = _footer(result, width)
    height = 1.5 * n_rows + 0.8 + 0.12 * len(lines)
    fig = new_figure(width, height)
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.75 / width, top=1 - 0.55 / height,
                        bottom=(0.1 + 0.12 * len(lines)) / height, wspace=0.06, hspace=0.12)
    where = {int(i): k for k, i in enumerate(result.shift_indices)}
    for r, idx in enumerate(drawn):
        x, y = evalset.dataset[idx]
        x = np.asarray(torch.as_tensor(x).float())
        truth = names[int(y)]
        _tile(axes[r, 0], x)
        axes[r, 0].set_ylabel(f"#{idx}\n{truth}", fontsize=7)
        for c, (m, what, kind) in enumerate(cols, start=1):
            ax = axes[r, c]
            if what == "x_adv":
                _tile(ax, m.x_adv[r])
                ok = int(m.pred_adv[r]) == int(y)
                _corner(ax, f"→ {names[int(m.pred_adv[r])]} {'✓' if ok else '✗'}")
                continue
            _tile(ax, x if what == "clean" else m.x_adv[r], (m.clean if what == "clean" else m.adv)[kind][r])
            if what == "adv" and kind in m.shifts:
                _corner(ax, f"Δ = {m.shifts[kind][where[int(idx)]]:.1f}")
    axes[0, 0].set_title("image x", fontsize=7.5)
    for c, (m, what, kind) in enumerate(cols, start=1):
        head = "x′ (attack on it)" if what == "x_adv" else \
            f"{KIND_TITLES[kind or 'class']}({'x' if what == 'clean' else 'x′'})"
        axes[0, c].set_title(f"{m.label}\n{head}", fontsize=7.5)
    cax = fig.add_axes((1 - 0.62 / width, 0.2, 0.1 / width, 0.6))
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap=colormaps[CMAP]), cax=cax)
    bar.set_label("attention (min-max normalised: 0 least, 1 most)", fontsize=7)
    bar.ax.tick_params(labelsize=6.5)
    p = plan.protocol
    fig.suptitle(f"Text-guided attention of the true class · {p.name} v{p.version} · {plan.dataset} · "
                 f"{plan.spec.name} ε = {eps_text(plan.eps)} (x′: white-box against each model)", fontsize=9,
                 y=1 - 0.12 / height, va="top")
    fig.text(0.6 / width, 0.05 / height, "\n".join(lines), fontsize=6.5, ha="left", va="bottom")
    return fig


def _footer(result: AttentionResult, width: float) -> list[str]:
    """The figure's caption lines (map definition, mean shifts, model ids), wrapped to the figure's width."""
    import textwrap

    plan, models = result.plan, result.models
    n = len(result.shift_indices)

    def mean(m: ModelMaps, kind: str) -> str:
        s = summarise(m.shifts[kind])
        return f"{s.mean:.2f}" + (f" ± {s.se:.2f}" if s.se is not None else "")

    means = "; ".join(f"{m.label} {mean(m, 'class')}" + (f" (A_comp {mean(m, 'comp')})" if "comp" in m.shifts else "")
                      for m in models)
    comp = any("comp" in m.shifts for m in models)
    text = [f"Maps: {plan.cfg.norm} normalisation, min-max over the patches, bilinear to {MAP_SIZE}×{MAP_SIZE}, "
            f"overlaid at α = {OVERLAY_ALPHA}; A: guided by the true class's prompt of the zero-shot head"
            + ("; A_non: by the non-class prompt; A_comp = A ⊙ (1 − A_non)" if comp else "")
            + ". Δ = ‖A(x′) − A(x)‖₂ of that image; → the prediction on x′ (✓ still correct).",
            f"Mean shift ± s.e. over {n} seeded images: {means}.",
            "Models: " + "; ".join(f"{m.label} = {m.model_id}" for m in models) + "."]
    chars = max(60, int((width - 1.0) * 22))
    return [line for t in text for line in textwrap.wrap(t, chars)]
