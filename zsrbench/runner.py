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
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

import zsrbench
from zsrbench.attacks.base import AttackSpec, eps_text
from zsrbench.cpu_jobs import evaluate_in_processes, resolve_jobs
from zsrbench.data.base import EvalSet, indices_digest, select_indices
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.records import metrics_from_flags, read_record, write_result
from zsrbench.leaderboard.schema import AttackConfig, Env, Flags, ModelInfo, ProtocolInfo, ResultRecord
from zsrbench.models import LOGIT_SCALE, CLIPParts, make_classifier
from zsrbench.protocols import Protocol
from zsrbench.registry import DATASETS, DEFENSES
from zsrbench.run_config import (  # noqa: F401  (RunConfig, check_config, ... are part of this module's API)
    PRECISIONS, Plan, RunConfig, check_config, check_device, check_results_dir, default_device, make_plan,
    resolve_subset, run_variant,
)

resolve_device = check_device  # the name older callers use


@dataclass
class DatasetResult:
    path: Path
    record: ResultRecord


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
    plan = make_plan(cfg)
    if plan.subset and log:
        log(f"evaluating the '{plan.subset}' subset of {plan.protocol.name}: {plan.n_samples} seeded samples per "
            "dataset (wider intervals; such entries are not ranked). --subset full evaluates the full test sets "
            "rankings use.")
    defense, parts, checkpoint = prepare_model(cfg, plan.protocol, device=plan.device, seed=plan.seed,
                                               progress=progress, log=log)
    model_bytes = sum(p.numel() * p.element_size() for p in parts.model.parameters())
    jobs = resolve_jobs(cfg.jobs, plan.device, len(plan.datasets), model_bytes)
    if jobs > 1:  # the weights are resolved (trained, downloaded) and loadable: workers only load them
        del parts
        if log:
            log(f"evaluating {len(plan.datasets)} datasets in {jobs} processes (--jobs)")
        results = evaluate_in_processes(
            replace(cfg, checkpoint=checkpoint, device=plan.device), plan.datasets, jobs,
            on_done=(lambda r: log(_done_line(r.record, r.path))) if log else None)
    else:
        results = _evaluate_datasets(plan, parts, defense, checkpoint, progress=progress, log=log)
    if cfg.leaderboard_dir is not None and results:
        _add_to_leaderboard(cfg.leaderboard_dir, results, log)
    return results


def _add_to_leaderboard(root: str, results: Sequence[DatasetResult], log: Callable[[str], None] | None) -> None:
    from zsrbench.leaderboard.store import add_measured

    added = add_measured(root, [(r.path, r.record) for r in results])
    for rev, outcome in zip(added, added.outcomes):
        if log and outcome == "reproduced":
            log(f"reproduced {rev.stem}: {rev.parent.parent.name}/{rev.parent.name} (the same per-sample flags; "
                "no new revision)")
        elif log:
            log(f"leaderboard: {rev}" + (" (unchanged: the same records)" if outcome == "unchanged" else ""))


def prepare_model(cfg: RunConfig, protocol: Protocol, *, device: str, seed: int, progress: bool = False,
                  log: Callable[[str], None] | None = None) -> tuple[Any, CLIPParts, str | None]:
    """The defense, its loaded model and the checkpoint it came from (fine-tuned on demand where the protocol
    allows it and no checkpoint was given)."""
    from zsrbench.defenses.base import LoadSpec

    defense = DEFENSES.get(cfg.defense)()
    checkpoint = cfg.checkpoint
    if checkpoint is None and getattr(defense, "trainable", False):
        from zsrbench.train import ensure_trained  # (check_config made sure the protocol trains on demand)

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


def _evaluate_datasets(plan: Plan, parts: CLIPParts, defense: Any, checkpoint: str | None, *, progress: bool,
                       log: Callable[[str], None] | None) -> list[DatasetResult]:
    """Evaluate the plan's datasets one after the other in this process; write and return their records."""
    cfg = plan.cfg
    mid = model_id(defense.name, parts)
    env = environment(plan.device)
    results: list[DatasetResult] = []
    workers = cfg.num_workers if cfg.num_workers is not None else (0 if plan.device == "cpu" else 4)
    bar = _progress(progress)
    with bar:
        for name in plan.datasets:
            evalset = _build(plan, name, parts.image_size, log)
            indices = select_indices(len(evalset), plan.n_samples, plan.seed)
            done = _resumable(plan, mid, name, indices) if cfg.resume else None
            if done is not None:
                results.append(done)
                if log:
                    log(f"{name}: already evaluated with the same settings ({done.path}); skipped (--resume)")
                continue
            clf, head_info = make_classifier(parts, evalset.info.prompts(), device=plan.device)
            clf = defense.wrap_classifier(clf)  # the loaded defense: what attacks see
            task = bar.add_task(f"{name} [{plan.suite} ε={eps_text(plan.eps)}]", total=len(indices))
            t0 = time.perf_counter()
            flags, infos, timing = evaluate_dataset(
                clf, evalset, indices, plan.specs, plan.params, eps=plan.eps, seed=plan.seed,
                batch_size=plan.batch_size, device=plan.device, precision=cfg.precision, num_workers=workers,
                on_batch=lambda b, t=task: bar.advance(t, b))
            timing = {"wall_s": time.perf_counter() - t0, **timing}
            if evalset.skipped:
                infos["notes"].append(f"{len(evalset.skipped)} image(s) left out because they do not decode "
                                      "(--skip-broken-images); listed in protocol.skipped_files")
            record = _record(plan, name, evalset, indices, mid, defense.name, parts, checkpoint, head_info, flags,
                             infos, timing, env)
            path = write_result(cfg.results_dir, record, flags)
            results.append(DatasetResult(path=path, record=read_record(path)))
            if log:
                log(_done_line(record, path))
    return results


def _build(plan: Plan, name: str, image_size: int, log: Callable[[str], None] | None) -> EvalSet:
    cfg = plan.cfg
    builder = DATASETS.get(name)
    if not cfg.skip_broken_images:
        return builder.build(cfg.data_root, image_size=image_size, download=cfg.download)
    evalset = builder.build(cfg.data_root, image_size=image_size, download=cfg.download, skip_broken=True)
    if evalset.skipped and log:
        log(f"{name}: left out {len(evalset.skipped)} image(s) that do not decode (--skip-broken-images; recorded): "
            + ", ".join(evalset.skipped[:3]) + (" …" if len(evalset.skipped) > 3 else ""))
    return evalset


def _record(plan: Plan, name: str, evalset: EvalSet, indices: Sequence[int], mid: str, defense_name: str,
            parts: CLIPParts, checkpoint: str | None, head_info: dict[str, Any], flags: dict[str, np.ndarray],
            infos: dict[str, list[str]], timing: dict[str, float], env: Env) -> ResultRecord:
    """The result record of one evaluated dataset: what was evaluated, how, on what, and what it measured."""
    info, specs, wall = evalset.info, plan.specs, timing["wall_s"]
    return ResultRecord(
        zsrbench_version=zsrbench.__version__, git_sha=git_sha(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model=ModelInfo(id=mid, defense=defense_name, architecture=parts.portable_architecture(),
                        pretrained=parts.portable_pretrained(),
                        checkpoint=parts.portable_checkpoint(checkpoint),  # no machine-local paths
                        checkpoint_sha256=parts.source.get("checkpoint_sha256"),
                        weights_sha256=parts.source.get("weights_sha256"), tensors_sha256=parts.tensors_sha256(),
                        text_tower_sha256=head_info["text_tower_sha256"], image_size=parts.image_size,
                        hparams=parts.source.get("hparams", {}), notes=list(parts.source.get("notes", []))),
        protocol=ProtocolInfo(
            name=plan.protocol.name, version=plan.protocol.version, dataset=name, split=info.split,
            n_total=len(evalset), n_samples=len(indices), seed=plan.seed, indices_digest=indices_digest(indices),
            templates=info.prompts(), templates_digest=info.templates_digest(), input_mode=info.input_mode,
            input_size=parts.image_size, logit_scale=LOGIT_SCALE, eps=plan.eps / 255.0, eps_text=eps_text(plan.eps),
            suite=plan.suite, attacks=[AttackConfig(name=s.name, family=s.family, params=plan.params[s.name])
                                       for s in specs],
            precision=plan.cfg.precision,
            success_criterion=str(plan.params[specs[0].name].get("criterion", "any misclassified output")),
            batch_size=plan.batch_size, subset=plan.subset, settings=plan.protocol.settings(), variant=plan.variant,
            skipped_files=list(evalset.skipped)),
        metrics=metrics_from_flags(flags, info.num_classes, [s.name for s in specs]),
        flags=Flags(**infos),
        env=env,
        timing={"wall_s": round(wall, 3), "images_per_s": round(len(indices) / wall, 3) if wall > 0 else 0.0,
                **{k: round(v, 3) for k, v in timing.items() if k != "wall_s"}},
    )


def _resumable(plan: Plan, mid: str, dataset: str, indices: Sequence[int]) -> DatasetResult | None:
    """The existing record of exactly this evaluation, if one is on disk: the same samples, attacks and their
    parameters, ε, seed, batch and precision (everything that changes the per-sample flags)."""
    from zsrbench.leaderboard.records import result_path

    path = result_path(plan.cfg.results_dir, plan.protocol.name, plan.protocol.version, mid, plan.suite,
                       eps_text(plan.eps), dataset, plan.subset, plan.variant)
    if not path.is_file():
        return None
    try:
        rec = read_record(path)
    except ZsrError:
        return None
    p = rec.protocol
    same = (p.version == plan.protocol.version and p.indices_digest == indices_digest(indices)
            and p.precision == plan.cfg.precision and p.seed == plan.seed
            and (p.batch_size or plan.protocol.batch_size) == plan.batch_size and p.variant == plan.variant
            and [(a.name, a.params) for a in p.attacks] == [(k, v) for k, v in plan.params.items()])
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
