"""What `zsrbench attention` is asked to do (:class:`AttentionConfig`) and the checked plan it runs
(:class:`AttentionPlan`): every name and value checked, every default resolved, before a model is built or
anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zsrbench import paths
from zsrbench.attacks.base import AttackSpec
from zsrbench.defenses import attention as att
from zsrbench.errors import ZsrError
from zsrbench.figures.attention_maps import DEFAULT_NORM
from zsrbench.figures.output import Output, resolve_outputs
from zsrbench.protocols import Protocol
from zsrbench.evaluation.config import RunConfig, check_config, check_results_dir, run_variant

DEFAULT_N_IMAGES = 3
DEFAULT_N_SHIFT = 64


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
