"""Evaluate a defense under an attack suite on the datasets of a protocol, and write result records.

A sample is robust only if it is classified correctly clean and survives every attack of the suite. Every
attack runs on all clean-correct samples, so each attack's own robust accuracy is known too; the per-sample
flags go to a sidecar next to each record.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

import zsrbench
from zsrbench.attacks.base import AttackSpec, eps_text, validate_eps
from zsrbench.cpu_jobs import evaluate_in_processes, resolve_jobs
from zsrbench.data.base import EvalSet, indices_digest, select_indices
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.records import metrics_from_flags, read_record, write_result
from zsrbench.leaderboard.schema import AttackConfig, Env, Flags, ModelInfo, ProtocolInfo, ResultRecord
from zsrbench.models import LOGIT_SCALE, CLIPParts, make_classifier
from zsrbench.protocols import Protocol
from zsrbench.registry import ATTACKS, DATASETS, DEFENSES, PROTOCOLS, load_builtins

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one evaluation. ``None`` means "the protocol's default"."""

    defense: str = "clip"
    protocol: str = "micro"
    attacks: tuple[str, ...] = ("pgd",)
    eps: float | None = None  # units of 1/255
    attack_params: dict[str, Any] = field(default_factory=dict)  # step, steps, restarts, kappa, criterion
    model: str | None = None
    pretrained: str | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    trust_checkpoint: bool = False
    datasets: tuple[str, ...] | None = None
    data_root: str | None = None
    download: bool = False
    n_samples: int | None = None
    subset: str | None = None  # a named subset of the protocol ("full": the full sets); None: the protocol's default
    seed: int | None = None
    batch_size: int | None = None  # None: the protocol's
    device: str | None = None
    precision: str = "fp32"
    results_dir: str = "results"
    leaderboard_dir: str | None = "leaderboards"  # None: write result records only
    resume: bool = False
    num_workers: int | None = None  # DataLoader workers
    jobs: int | None = None  # CPU processes over datasets; None: auto (see zsrbench.cpu_jobs)
    shard: tuple[int, int] | None = None  # (k, n): this process evaluates datasets k, k+n, k+2n, ... (0-based)


@dataclass
class DatasetResult:
    path: Path
    record: ResultRecord


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def package_versions() -> dict[str, str | None]:
    def v(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {"torch": torch.__version__, "open_clip": v("open_clip_torch"), "pyautoattack": v("pyautoattack")}


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(zsrbench.__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str) -> Env:
    vers = package_versions()
    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else platform.processor() or "cpu"
    return Env(python=sys.version.split()[0], torch=vers["torch"] or "", open_clip=vers["open_clip"],
               pyautoattack=vers["pyautoattack"], device=f"{device} ({name})", platform=platform.platform())


def check_config(cfg: RunConfig) -> tuple[Protocol, list[AttackSpec], float, dict[str, dict[str, Any]]]:
    """Validate names and values before anything runs or is written."""
    load_builtins()
    protocol: Protocol = PROTOCOLS.get(cfg.protocol)
    DEFENSES.get(cfg.defense)
    if not cfg.attacks:
        raise ZsrError("No attack given: pass --attack NAME (see `zsrbench list attacks`).")
    specs = [ATTACKS.get(a) for a in cfg.attacks]
    eps = validate_eps(cfg.eps if cfg.eps is not None else protocol.eps)
    if cfg.precision not in PRECISIONS:
        raise ZsrError(f"Unknown precision '{cfg.precision}'; use one of {', '.join(PRECISIONS)}.")
    if cfg.batch_size is not None and cfg.batch_size < 1:
        raise ZsrError(f"--batch-size must be at least 1; got {cfg.batch_size}.")
    if cfg.n_samples is not None and cfg.n_samples < 1:
        raise ZsrError(f"--n-samples must be at least 1; got {cfg.n_samples}.")
    params: dict[str, dict[str, Any]] = {}
    for spec in specs:
        given = {k: v for k, v in cfg.attack_params.items() if v is not None and k in spec.defaults}
        merged = {**protocol.attack_defaults.get(spec.name, {}), **given}
        merged = {k: v for k, v in merged.items() if k in spec.defaults}
        conf = spec.config(**merged)
        if "steps" in conf and int(conf["steps"]) < 1:
            raise ZsrError(f"--steps must be at least 1; got {conf['steps']}.")
        if "restarts" in conf and int(conf["restarts"]) < 1:
            raise ZsrError(f"--restarts must be at least 1; got {conf['restarts']}.")
        if "step" in conf and not conf["step"] > 0:
            raise ZsrError(f"--step must be positive (units of 1/255); got {conf['step']}.")
        if "eot" in conf and (not isinstance(conf["eot"], int) or isinstance(conf["eot"], bool) or conf["eot"] < 1):
            raise ZsrError(f"--eot must be an integer ≥ 1 (the forward passes whose gradients each {spec.name} step "
                           f"averages; 1 = plain PGD); got {conf['eot']!r}.")
        params[spec.name] = conf
    unknown = [k for k, v in cfg.attack_params.items() if v is not None and not any(k in s.defaults for s in specs)]
    if unknown:
        raise ZsrError(f"The attack suite {'+'.join(cfg.attacks)} takes no parameter {', '.join(unknown)}.")
    if cfg.subset is not None and cfg.subset != "full" and cfg.subset not in protocol.subsets:
        named = ", ".join([*protocol.subsets, "full"])
        raise ZsrError(f"Protocol '{protocol.name}' has no subset '{cfg.subset}'; use --subset with one of: {named}.")
    if cfg.subset is not None and cfg.n_samples is not None:
        raise ZsrError("--subset and --n-samples both choose the samples; pass one of them.")
    datasets = cfg.datasets or protocol.datasets
    for d in datasets:
        DATASETS.get(d)
    if cfg.shard is not None:
        k, n = cfg.shard
        if not (n >= 1 and 0 <= k < n):
            raise ZsrError(f"--shard K/N needs 0 ≤ K < N (e.g. --shard 0/4 … 3/4); got {k}/{n}.")
    if protocol.needs_data_root and cfg.data_root is None and any(DATASETS.get(d).needs_root for d in datasets):
        raise ZsrError(
            f"Protocol '{protocol.name}' reads its datasets from disk: pass --data-root DIR (the folder holding "
            "them; `zsrbench data check --data-root DIR` shows what is found), or use --protocol micro."
        )
    if cfg.data_root is not None and not Path(cfg.data_root).is_dir() and not cfg.download:
        raise ZsrError(f"Data root {cfg.data_root} does not exist. Pass the folder that holds the datasets.")
    return protocol, specs, eps, params


def check_results_dir(path: str | Path) -> None:
    p = Path(path)
    probe_dir = p
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir() or not _writable(probe_dir):
        raise ZsrError(f"Results directory {p} is not writable. Choose another with --results-dir.")


def _writable(d: Path) -> bool:
    import os

    return os.access(d, os.W_OK | os.X_OK)


def model_id(defense: str, parts: CLIPParts) -> str:
    """``<defense>/<architecture>/<first 12 hex of the tensors' digest>``: equal tensors, one id (and one entry).

    The digest is of the whole evaluated model (visual and text tower, :meth:`CLIPParts.tensors_sha256`), not of
    a file: re-saving or re-training the same weights gives the same id. A trained folder is named by the
    architecture it was trained from (its manifest's ``base_architecture``).
    """
    return f"{defense}/{parts.base_name()}/{parts.tensors_sha256()[:12]}"


def _autocast(device: str, precision: str):
    if precision == "fp32":
        return torch.autocast(device_type=device.split(":")[0], enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def batch_seed(seed: int, dataset: str, start: int) -> int:
    h = hashlib.sha256(f"{seed}|{dataset}|{start}".encode()).digest()
    return int.from_bytes(h[:4], "little")


def evaluate_dataset(
    clf: torch.nn.Module, evalset: EvalSet, indices: Sequence[int], specs: Sequence[AttackSpec],
    params: dict[str, dict[str, Any]], *, eps: float, seed: int, batch_size: int, device: str, precision: str,
    num_workers: int = 0, on_batch: Callable[[int], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, list[str]], dict[str, float]]:
    """Per-sample flags (clean prediction, per-attack and worst-case robustness) for one dataset.

    Non-finite logits (NaN/inf) count against the model: a sample whose clean logits are non-finite is not correct
    (its ``clean_pred`` is -1, no class), and one whose logits on an attack's ``x_adv`` are non-finite (checked by
    one extra forward pass, under the same autocast) is not robust to that attack. ``flags["nonfinite"]`` marks
    both kinds.
    """
    loader = DataLoader(Subset(evalset.dataset, list(indices)), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, pin_memory=device.startswith("cuda"))
    n = len(indices)
    labels = np.zeros(n, dtype=np.int64)
    clean_pred = np.zeros(n, dtype=np.int64)
    robust = {s.name: np.zeros(n, dtype=bool) for s in specs}
    nonfinite = np.zeros(n, dtype=bool)
    infos: dict[str, list[str]] = {"fallbacks": [], "autoattack_warnings": [], "notes": []}
    timing = {"clean_s": 0.0, "attack_s": 0.0}
    start = 0
    for x, y in loader:
        x = x.to(device, non_blocking=True).float().contiguous()
        y = y.to(device, non_blocking=True)
        b = x.shape[0]
        t0 = time.perf_counter()
        with torch.no_grad(), _autocast(device, precision):
            logits = clf(x)
        finite = torch.isfinite(logits).all(1)
        pred = torch.where(finite, logits.argmax(1), torch.full_like(y, -1))  # a NaN/inf row predicts no class
        timing["clean_s"] += time.perf_counter() - t0
        bad = ~finite
        correct = pred == y
        labels[start:start + b] = y.cpu().numpy()
        clean_pred[start:start + b] = pred.cpu().numpy()
        idx = correct.nonzero().squeeze(1)
        t0 = time.perf_counter()
        for spec in specs:
            ok = correct.clone()
            if idx.numel():
                with _autocast(device, precision):
                    out = spec(clf, x[idx], y[idx], eps=eps, seed=batch_seed(seed, spec.name, start), **params[spec.name])
                with torch.no_grad(), _autocast(device, precision):  # x_adv whose logits are NaN/inf is no defense
                    adv_finite = torch.isfinite(clf(out.x_adv.to(device))).all(1)
                ok[idx] = ~out.success.to(device) & adv_finite
                bad[idx] |= ~adv_finite
                _collect(infos, spec.name, out.info)
            robust[spec.name][start:start + b] = ok.cpu().numpy()
        timing["attack_s"] += time.perf_counter() - t0
        nonfinite[start:start + b] = bad.cpu().numpy()
        start += b
        if on_batch is not None:
            on_batch(b)
    worst = np.logical_and.reduce([robust[s.name] for s in specs]) if specs else clean_pred == labels
    flags = {"labels": labels, "clean_pred": clean_pred, "clean_correct": clean_pred == labels, "robust": worst}
    flags.update({f"robust__{k}": v for k, v in robust.items()})
    flags["nonfinite"] = nonfinite
    if nonfinite.any():
        infos["notes"].append(f"{int(nonfinite.sum())} sample(s) with non-finite logits (NaN/inf): counted neither "
                              "correct nor robust")
    return flags, {k: sorted(set(v)) for k, v in infos.items()}, timing


def _collect(infos: dict[str, list[str]], attack: str, info: dict[str, Any]) -> None:
    for item in info.get("adjustments", []) or info.get("fallbacks", []):
        infos["fallbacks"].append(f"{attack}: {item}")
    for item in info.get("warnings", []):
        infos["autoattack_warnings"].append(f"{attack}: {item}")


def run(cfg: RunConfig, *, progress: bool = True, log: Callable[[str], None] | None = None) -> list[DatasetResult]:
    """Evaluate ``cfg`` and write one record (+ flags sidecar) per dataset under ``cfg.results_dir``."""
    protocol, specs, eps, params = check_config(cfg)
    check_results_dir(cfg.results_dir)
    device = resolve_device(cfg.device)
    seed = protocol.seed if cfg.seed is None else cfg.seed
    subset = resolve_subset(cfg, protocol)
    n_samples = protocol.subsets[subset] if subset else (cfg.n_samples if cfg.n_samples is not None else protocol.n_samples)
    if subset and log:
        log(f"evaluating the '{subset}' subset of {protocol.name}: {n_samples} seeded samples per dataset (wider "
            f"intervals; such entries are not ranked). --subset full evaluates the full test sets rankings use.")
    defense, parts, checkpoint = prepare_model(cfg, protocol, device=device, seed=seed, progress=progress, log=log)
    datasets = tuple(cfg.datasets or protocol.datasets)
    if cfg.shard is not None:  # processes with the same settings and other shards write disjoint datasets
        datasets = datasets[cfg.shard[0]::cfg.shard[1]]
    model_bytes = sum(p.numel() * p.element_size() for p in parts.model.parameters())
    jobs = resolve_jobs(cfg.jobs, device, len(datasets), model_bytes)
    if jobs > 1:  # the weights are resolved (trained, downloaded) and loadable: workers only load them
        del parts
        if log:
            log(f"evaluating {len(datasets)} datasets in {jobs} processes (--jobs)")
        results = evaluate_in_processes(
            replace(cfg, checkpoint=checkpoint, device=device), datasets, jobs,
            on_done=(lambda r: log(_done_line(r.record, r.path))) if log else None)
    else:
        results = _evaluate_datasets(cfg, parts, defense, checkpoint, protocol, specs, eps, params, datasets,
                                     seed=seed, n_samples=n_samples, device=device, progress=progress, log=log)
    if cfg.leaderboard_dir is not None and results:
        from zsrbench.leaderboard.store import add_measured

        added = add_measured(cfg.leaderboard_dir, [(r.path, r.record) for r in results])
        for rev, outcome in zip(added, added.outcomes):
            if log and outcome == "reproduced":
                log(f"reproduced {rev.stem}: {rev.parent.parent.name}/{rev.parent.name} (the same per-sample flags; "
                    "no new revision)")
            elif log:
                log(f"leaderboard: {rev}" + (" (unchanged: the same records)" if outcome == "unchanged" else ""))
    return results


def resolve_device(device: str | None) -> str:
    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ZsrError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu.")
    return device


def resolve_subset(cfg: RunConfig, protocol: Protocol) -> str | None:
    """The named subset ``cfg`` evaluates (None: the full sets, or the caller's own --n-samples)."""
    if cfg.subset is None:
        return None if cfg.n_samples is not None else protocol.default_subset
    return None if cfg.subset == "full" else cfg.subset


def prepare_model(cfg: RunConfig, protocol: Protocol, *, device: str, seed: int, progress: bool = False,
                  log: Callable[[str], None] | None = None) -> tuple[Any, CLIPParts, str | None]:
    """The defense, its loaded model and the checkpoint it came from (fine-tuned on demand where the protocol
    allows it and no checkpoint was given)."""
    from zsrbench.defenses.base import LoadSpec

    defense = DEFENSES.get(cfg.defense)()
    checkpoint = cfg.checkpoint
    if checkpoint is None and getattr(defense, "trainable", False):
        from zsrbench.train import ensure_trained

        if cfg.model is not None and cfg.model != protocol.default_model:
            raise ZsrError(
                f"Defense '{defense.name}' with --model {cfg.model} needs its fine-tuned weights: pass --checkpoint "
                f"(a folder written by `zsrbench train`, a visual checkpoint file or a published checkpoint name)."
            )

        checkpoint = str(ensure_trained(defense.name, protocol, seed=seed, device=device, progress=progress, log=log))
    torch.manual_seed(seed)  # a model without pretrained weights is initialised from the run's seed
    model_name = cfg.model or protocol.default_model
    pretrained = cfg.pretrained if cfg.pretrained is not None else (protocol.default_pretrained if cfg.model is None else None)
    parts = defense.load(LoadSpec(model=model_name, pretrained=pretrained, checkpoint=checkpoint,
                                  checkpoint_sha256=cfg.checkpoint_sha256, trust_checkpoint=cfg.trust_checkpoint),
                         device=device)
    return defense, parts, checkpoint


def _done_line(record: ResultRecord, path: Path) -> str:
    m = record.metrics
    return f"{record.protocol.dataset}: clean {m.clean_accuracy:.2%}  robust {m.robust_accuracy:.2%}  -> {path}"


def _evaluate_datasets(cfg: RunConfig, parts: CLIPParts, defense: Any, checkpoint: str | None,
                       protocol: Protocol, specs: Sequence[AttackSpec], eps: float,
                       params: dict[str, dict[str, Any]], datasets: Sequence[str], *, seed: int,
                       n_samples: int | None, device: str, progress: bool,
                       log: Callable[[str], None] | None) -> list[DatasetResult]:
    """Evaluate ``datasets`` one after the other in this process; write and return their records."""
    defense_name = defense.name
    mid = model_id(defense_name, parts)
    suite = "+".join(s.name for s in specs)
    subset = resolve_subset(cfg, protocol)
    env = environment(device)
    results: list[DatasetResult] = []
    workers = cfg.num_workers if cfg.num_workers is not None else (0 if device == "cpu" else 4)
    bar = _progress(progress)
    with bar:
        for name in datasets:
            builder = DATASETS.get(name)
            evalset = builder.build(cfg.data_root, image_size=parts.image_size, download=cfg.download)
            indices = select_indices(len(evalset), n_samples, seed)
            if cfg.resume:
                done = _resumable(cfg.results_dir, mid, protocol, name, suite, eps, indices, params, cfg.precision,
                                  subset)
                if done is not None:
                    results.append(done)
                    if log:
                        log(f"{name}: already evaluated with the same settings ({done.path}); skipped (--resume)")
                    continue
            clf, head_info = make_classifier(parts, evalset.info.prompts(), device=device)
            clf = defense.wrap_classifier(clf)  # the loaded defense: what attacks see
            task = bar.add_task(f"{name} [{suite} ε={eps_text(eps)}]", total=len(indices))
            t0 = time.perf_counter()
            flags, infos, timing = evaluate_dataset(
                clf, evalset, indices, specs, params, eps=eps, seed=seed, batch_size=cfg.batch_size or protocol.batch_size, device=device,
                precision=cfg.precision, num_workers=workers, on_batch=lambda b, t=task: bar.advance(t, b))
            wall = time.perf_counter() - t0
            metrics = metrics_from_flags(flags, evalset.info.num_classes, [s.name for s in specs])
            info = evalset.info
            record = ResultRecord(
                zsrbench_version=zsrbench.__version__, git_sha=git_sha(),
                created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                model=ModelInfo(id=mid, defense=defense_name, architecture=parts.portable_architecture(),
                                pretrained=parts.portable_pretrained(),
                                checkpoint=parts.portable_checkpoint(checkpoint),  # no machine-local paths
                                checkpoint_sha256=parts.source.get("checkpoint_sha256"),
                                weights_sha256=parts.source.get("weights_sha256"),
                                tensors_sha256=parts.tensors_sha256(),
                                text_tower_sha256=head_info["text_tower_sha256"], image_size=parts.image_size,
                                hparams=parts.source.get("hparams", {}), notes=list(parts.source.get("notes", []))),
                protocol=ProtocolInfo(
                    name=protocol.name, version=protocol.version, dataset=name, split=info.split,
                    n_total=len(evalset), n_samples=len(indices), seed=seed, indices_digest=indices_digest(indices),
                    templates=info.prompts(), templates_digest=info.templates_digest(), input_mode=info.input_mode,
                    input_size=parts.image_size, logit_scale=LOGIT_SCALE, eps=eps / 255.0, eps_text=eps_text(eps),
                    suite=suite,
                    attacks=[AttackConfig(name=s.name, family=s.family, params=params[s.name]) for s in specs],
                    precision=cfg.precision,
                    success_criterion=str(params[specs[0].name].get("criterion", "any misclassified output")),
                    batch_size=cfg.batch_size or protocol.batch_size, subset=subset,
                    settings=protocol.settings()),
                metrics=metrics,
                flags=Flags(**infos),
                env=env,
                timing={"wall_s": round(wall, 3), "images_per_s": round(len(indices) / wall, 3) if wall > 0 else 0.0,
                        **{k: round(v, 3) for k, v in timing.items()}},
            )
            path = write_result(cfg.results_dir, record, flags)
            results.append(DatasetResult(path=path, record=read_record(path)))
            if log:
                log(_done_line(record, path))
    return results


def _resumable(results_dir: str, mid: str, protocol: Protocol, dataset: str, suite: str, eps: float,
               indices: Sequence[int], params: dict[str, dict[str, Any]], precision: str,
               subset: str | None = None) -> DatasetResult | None:
    """The existing record of exactly this evaluation, if one is on disk (same samples, attacks, ε, precision)."""
    from zsrbench.leaderboard.records import result_path

    path = result_path(results_dir, protocol.name, protocol.version, mid, suite, eps_text(eps), dataset, subset)
    if not path.is_file():
        return None
    try:
        rec = read_record(path)
    except ZsrError:
        return None
    p = rec.protocol
    same = (p.version == protocol.version and p.indices_digest == indices_digest(indices) and p.precision == precision
            and [(a.name, a.params) for a in p.attacks] == [(k, v) for k, v in params.items()])
    return DatasetResult(path=path, record=rec) if same else None


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    class Rate(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task):  # type: ignore[override]
            from rich.text import Text

            elapsed = task.finished_time if task.finished else task.elapsed
            speed = task.completed / elapsed if elapsed else 0.0
            return Text(f"{speed:.1f} img/s" if speed else "- img/s")

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    Rate(), TimeElapsedColumn(), disable=not enabled, transient=False)
