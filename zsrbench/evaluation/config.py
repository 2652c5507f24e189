"""What one evaluation is (:class:`RunConfig`), and the checks that every value in it is valid.

Everything here runs before any model is built or anything is written: a bad name or value is a
:class:`ZsrError` that says what to pass instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from zsrbench import paths
from zsrbench.paths import check_output_dir
from zsrbench.attacks.base import AttackSpec, validate_eps
from zsrbench.errors import ZsrError
from zsrbench.protocols import Protocol
from zsrbench.evaluation.adaptive import VARIANT, apply_eot, check_mode, eot_defaults, mode_record, resolve_mode
from zsrbench.evaluation.params import attack_params, check_suite
from zsrbench.defenses.test_time import declared
from zsrbench.registry import DATASETS, DEFENSES, PROTOCOLS, load_builtins

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")  # fp32: exact float32 (TF32 off), the default for attacks


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one evaluation. ``None`` means "the protocol's default"."""

    defense: str = "clip"
    protocol: str = "micro"
    attacks: tuple[str, ...] = ("pgd",)
    eps: float | None = None  # units of 1/255
    attack_params: dict[str, Any] = field(default_factory=dict)  # step, steps, restarts, kappa, criterion
    defense_params: dict[str, Any] = field(default_factory=dict)  # the defense's declared inference settings
    model: str | None = None
    pretrained: str | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    trust_checkpoint: bool = False
    datasets: tuple[str, ...] | None = None
    data_root: str | None = None
    download: bool = False
    skip_broken_images: bool = False  # leave out (and record) images that do not decode, instead of stopping
    n_samples: int | None = None
    subset: str | None = None  # a named subset of the protocol ("full": the full sets); None: the protocol's default
    seed: int | None = None
    batch_size: int | None = None  # None: the protocol's
    device: str | None = None
    precision: str = "fp32"
    compile: bool = False  # torch.compile the classifier (recorded in the record's env)
    results_dir: str = field(default_factory=lambda: str(paths.results_dir()))  # $ZSRBENCH_HOME/results or ./results
    leaderboard_dir: str | None = field(default_factory=lambda: str(paths.leaderboard_dir()))  # None: records only
    resume: bool = False
    replace_entry: bool = False  # the leaderboard revision holds only this run's datasets (drops the entry's others)
    num_workers: int | None = None  # DataLoader workers
    jobs: int | None = None  # local processes (torch.distributed ranks) over work units; None: auto (see zsrbench.evaluation.ranks)
    shard: tuple[int, int] | None = None  # (k, n): this process evaluates datasets k, k+n, k+2n, ... (0-based)
    # a test-time defense: "adaptive" (the default) or "non-adaptive" (see zsrbench.evaluation.adaptive)
    attack_mode: str | None = None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_config(cfg: RunConfig) -> tuple[Protocol, list[AttackSpec], float, dict[str, dict[str, Any]]]:
    """Validate every name and value before any model is built or anything is written."""
    load_builtins()
    protocol: Protocol = PROTOCOLS.get(cfg.protocol)
    DEFENSES.get(cfg.defense).inference_config(dict(cfg.defense_params))
    check_mode(cfg.attack_mode)
    specs = check_suite(cfg.attacks)
    eps = validate_eps(cfg.eps if cfg.eps is not None else protocol.eps)
    _check_numbers(cfg)
    params = attack_params(cfg.attacks, cfg.attack_params, protocol, specs)
    _check_subset(cfg, protocol)
    datasets = _check_datasets(cfg, protocol)
    _check_model_source(cfg)
    _check_weights(cfg, protocol)
    check_device(cfg.device)
    _check_data(cfg, protocol, datasets)
    return protocol, specs, eps, params


def _check_numbers(cfg: RunConfig) -> None:
    if cfg.precision not in PRECISIONS:
        raise ZsrError(f"Unknown precision '{cfg.precision}'; use one of {', '.join(PRECISIONS)}.")
    for flag, value, least in (("--batch-size", cfg.batch_size, 1), ("--n-samples", cfg.n_samples, 1),
                               ("--seed", cfg.seed, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ZsrError(f"{flag} must be a whole number ≥ {least}; got {value!r}.")
    if cfg.shard is not None:
        k, n = cfg.shard
        if not (n >= 1 and 0 <= k < n):
            raise ZsrError(f"--shard K/N needs 0 ≤ K < N (e.g. --shard 0/4 … 3/4); got {k}/{n}.")


def _param_text(value: Any) -> str:
    """A parameter value as the variant name shows it: the shortest text that reads back as the same value."""
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def run_variant(cfg: RunConfig, protocol: Protocol, specs: Sequence[AttackSpec], params: dict[str, dict[str, Any]],
                seed: int, subset: str | None, standard: dict[str, dict[str, Any]] | None = None,
                non_adaptive: bool = False) -> str | None:
    """The settings of ``cfg`` that differ from the protocol's and change the flags, as a short name (None: none).

    Records of different variants live in different folders, so one never replaces another and ``--resume``
    never takes one for another. A name that would be long, or hold characters a folder name may not (a text
    parameter's value), is replaced by a digest of it.
    """
    rest = _settings_variant(cfg, protocol, specs, params, seed, subset, standard)
    if not non_adaptive:
        return rest
    return VARIANT + (f"__{rest}" if rest else "")  # kept readable: tables and rankings read it


def _settings_variant(cfg: RunConfig, protocol: Protocol, specs: Sequence[AttackSpec],
                      params: dict[str, dict[str, Any]], seed: int, subset: str | None,
                      standard: dict[str, dict[str, Any]] | None) -> str | None:
    parts = [] if seed == protocol.seed else [f"seed{seed}"]
    if cfg.batch_size is not None and cfg.batch_size != protocol.batch_size:
        parts.append(f"bs{cfg.batch_size}")
    if cfg.precision != "fp32":
        parts.append(cfg.precision)
    if subset is None and cfg.n_samples is not None and cfg.n_samples != protocol.n_samples:
        parts.append(f"n{cfg.n_samples}")
    values: list[str] = []
    for spec in specs:
        default = spec.config(**{**{k: v for k, v in protocol.attack_defaults.get(spec.name, {}).items()
                                    if k in spec.defaults}, **(standard or {}).get(spec.name, {})})
        changed = [k for k in sorted(params[spec.name]) if params[spec.name][k] != default.get(k)]
        values += [_param_text(params[spec.name][k]) for k in changed]
        parts += [f"{spec.name}-{k}{_param_text(params[spec.name][k])}" for k in changed]
    if not parts:
        return None
    text = "__".join(parts)
    safe = all(re.fullmatch(r"[A-Za-z0-9._+-]+", v) and "__" not in v for v in values)
    return text if len(text) <= 64 and safe else "v-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_subset(cfg: RunConfig, protocol: Protocol) -> None:
    if cfg.subset is not None and cfg.subset != "full" and cfg.subset not in protocol.subsets:
        named = ", ".join([*protocol.subsets, "full"])
        raise ZsrError(f"Protocol '{protocol.name}' has no subset '{cfg.subset}'; use --subset with one of: {named}.")
    if cfg.subset is not None and cfg.n_samples is not None:
        raise ZsrError("--subset and --n-samples both choose the samples; pass one of them.")


def _check_datasets(cfg: RunConfig, protocol: Protocol) -> tuple[str, ...]:
    if cfg.datasets is not None and not cfg.datasets:
        raise ZsrError("--datasets was given but names no dataset; pass a comma-separated list such as "
                       f"{','.join(protocol.datasets[:2])}, or leave it out for all of the protocol's datasets.")
    datasets = tuple(cfg.datasets or protocol.datasets)
    twice = sorted({d for d in datasets if datasets.count(d) > 1})
    if twice:
        raise ZsrError(f"--datasets lists {', '.join(twice)} more than once; name each dataset once.")
    for d in datasets:
        DATASETS.get(d)
    return datasets


def _check_model_source(cfg: RunConfig) -> None:
    from zsrbench.models import shipped

    if cfg.checkpoint is not None and cfg.checkpoint.startswith(shipped.PREFIX):
        shipped.by_name(cfg.checkpoint)  # a model the package ships (pinned by its own sha256)
    if cfg.checkpoint_sha256 is None:
        return
    if cfg.checkpoint is None:
        raise ZsrError("--checkpoint-sha256 checks the file given with --checkpoint, but no --checkpoint was given; "
                       "pass both, or drop --checkpoint-sha256.")
    from zsrbench.models.weights import check_sha256_text

    check_sha256_text(cfg.checkpoint_sha256)


def _check_weights(cfg: RunConfig, protocol: Protocol) -> None:
    """A trainable defense without --checkpoint is fine-tuned on demand, where the protocol allows it."""
    if cfg.checkpoint is not None or not getattr(DEFENSES.get(cfg.defense), "trainable", False):
        return
    if not protocol.train_on_demand:
        raise ZsrError(
            f"Defense '{cfg.defense}' needs fine-tuned weights under protocol '{protocol.name}': pass --checkpoint "
            "(a folder written by `zsrbench train`, a visual checkpoint file, or a published checkpoint name), or "
            f"train it first: zsrbench train --defense {cfg.defense} --protocol {protocol.name} --data-root DIR.")
    if cfg.model is not None and cfg.model != protocol.default_model:
        raise ZsrError(
            f"Defense '{cfg.defense}' with --model {cfg.model} needs its fine-tuned weights: pass --checkpoint "
            "(a folder written by `zsrbench train`, a visual checkpoint file or a published checkpoint name).")


def check_device(device: str | None) -> str:
    """``device`` (or the default) if this machine has it; a :class:`ZsrError` that says what to use otherwise."""
    device = device or default_device()
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (kind == "cpu" and index) or (index and not index.isdigit()):
        raise ZsrError(f"Unknown device '{device}': use --device cpu, cuda or cuda:N (zsrbench evaluates on CPUs "
                       "and CUDA GPUs).")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ZsrError(f"--device {device} was asked for but no CUDA GPU is visible; use --device cpu.")
        if index and int(index) >= count:
            raise ZsrError(f"--device {device}: this machine has {count} CUDA GPU(s) (cuda:0 … cuda:{count - 1}).")
    return device


def _check_data(cfg: RunConfig, protocol: Protocol, datasets: Sequence[str]) -> None:
    """Every dataset that reads from disk is there, checked before any model is built (all of them named at once)."""
    on_disk = [d for d in datasets if DATASETS.get(d).needs_root]
    if not on_disk:
        return
    if cfg.data_root is None:
        if protocol.needs_data_root:
            raise ZsrError(
                f"Protocol '{protocol.name}' reads its datasets from disk: pass --data-root DIR (the folder holding "
                "them; `zsrbench data check --data-root DIR` shows what is found), or use --protocol micro.")
        return
    from zsrbench.data.layout import is_root_template, require_usable_root

    require_usable_root(cfg.data_root)  # a name or path the filesystem cannot look up
    templated = is_root_template(cfg.data_root)  # '/data/{dataset}': checked per dataset below
    root = cfg.data_root if templated else Path(cfg.data_root).expanduser()
    if not templated and root.exists() and not root.is_dir():
        raise ZsrError(f"Data root {cfg.data_root} is a file, not a folder. Pass the folder that holds the datasets.")
    if cfg.download:
        return
    if not templated and not root.is_dir():
        raise ZsrError(f"Data root {cfg.data_root} does not exist. Pass the folder that holds the datasets.")
    from zsrbench.data.check import check_data_root

    bad = [s for s in check_data_root(root, list(on_disk)) if not s.ok]
    if bad:
        listed = "; ".join(f"{s.name} ({s.status}: {s.message})" for s in bad)
        raise ZsrError(f"{len(bad)} of the {len(on_disk)} datasets are not usable under {root}: {listed}. "
                       f"`zsrbench data check --data-root {root}` shows the expected layout; fix them, pass "
                       "--datasets with the usable ones, or --download where torchvision can fetch them.")


def check_results_dir(path: str | Path) -> None:
    check_output_dir(path, "--results-dir", "Results directory")


def resolve_subset(cfg: RunConfig, protocol: Protocol) -> str | None:
    """The named subset ``cfg`` evaluates (None: the full sets, or the caller's own --n-samples)."""
    if cfg.subset is None:
        return None if cfg.n_samples is not None else protocol.default_subset
    return None if cfg.subset == "full" else cfg.subset


@dataclass(frozen=True)
class Plan:
    """One checked evaluation: a :class:`RunConfig` with every protocol default resolved."""

    cfg: RunConfig
    protocol: Protocol
    specs: tuple[AttackSpec, ...]
    eps: float  # units of 1/255
    params: dict[str, dict[str, Any]]  # each attack's full parameters
    seed: int
    subset: str | None  # the named subset evaluated (None: the full sets or --n-samples)
    n_samples: int | None  # per dataset (None: all)
    variant: str | None  # see run_variant
    device: str
    datasets: tuple[str, ...]  # this process's (after --shard)
    attack_mode: dict[str, Any] | None = None  # a test-time defense's mode (zsrbench.evaluation.adaptive.mode_record)

    @property
    def non_adaptive(self) -> bool:
        return bool(self.attack_mode) and self.attack_mode["mode"] == "non-adaptive"

    @property
    def suite(self) -> str:
        return "+".join(s.name for s in self.specs)

    @property
    def batch_size(self) -> int:
        return self.cfg.batch_size or self.protocol.batch_size


def make_plan(cfg: RunConfig) -> Plan:
    """Check ``cfg`` (:func:`check_config`, the results folder) and resolve what it evaluates."""
    protocol, specs, eps, params = check_config(cfg)
    check_results_dir(cfg.results_dir)
    if cfg.leaderboard_dir is not None:
        check_output_dir(cfg.leaderboard_dir, "--leaderboard-dir", "Leaderboard folder")
    seed = protocol.seed if cfg.seed is None else cfg.seed
    subset = resolve_subset(cfg, protocol)
    n_samples = protocol.subsets[subset] if subset else (cfg.n_samples if cfg.n_samples is not None else protocol.n_samples)
    datasets = tuple(cfg.datasets or protocol.datasets)
    if cfg.shard is not None:  # processes with the same settings and other shards write disjoint datasets
        datasets = datasets[cfg.shard[0]::cfg.shard[1]]
    defense_cls = DEFENSES.get(cfg.defense)
    mode, _ = resolve_mode(cfg.attack_mode, defense_cls)
    decl = declared(defense_cls)
    standard = eot_defaults(specs, decl, mode)
    params = apply_eot(params, standard, cfg.attack_params)
    variant = run_variant(cfg, protocol, specs, params, seed, subset, standard, non_adaptive=mode == "non-adaptive")
    return Plan(cfg=cfg, protocol=protocol, specs=tuple(specs), eps=eps, params=params, seed=seed, subset=subset,
                n_samples=n_samples, variant=variant, device=check_device(cfg.device), datasets=datasets,
                attack_mode=mode_record(decl, mode))


def set_matmul_precision(precision: str) -> None:
    """TF32 matrix products only under ``tf32``: ``fp32`` is exact float32 (cuDNN's TF32 default turned off)."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
