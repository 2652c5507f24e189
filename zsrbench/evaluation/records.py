"""What a run writes: the result record of one evaluated dataset, the model it names, and the environment."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

import zsrbench
from zsrbench.attacks.base import eps_text
from zsrbench.data.base import EvalSet, indices_digest
from zsrbench.defenses.identity import provenance
from zsrbench.evaluation.config import Plan
from zsrbench.evaluation.jobs import DatasetResult, Job
from zsrbench.evaluation.units import assemble
from zsrbench.leaderboard.records import read_record, write_result
from zsrbench.leaderboard.records import metrics_from_flags
from zsrbench.leaderboard.schema import AttackConfig, Env, Flags, ModelInfo, ProtocolInfo, ResultRecord
from zsrbench.models.classifier import LOGIT_SCALE
from zsrbench.models.clip import CLIPParts


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


def environment(device: str, compiled: bool = False) -> Env:
    vers = package_versions()
    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else platform.processor() or "cpu"
    return Env(python=sys.version.split()[0], torch=vers["torch"] or "", open_clip=vers["open_clip"],
               pyautoattack=vers["pyautoattack"], device=f"{device} ({name})", platform=platform.platform(),
               compiled=compiled)


def _done_line(record: ResultRecord, path: Path) -> str:
    m = record.metrics
    return f"{record.protocol.dataset}: clean {m.clean_accuracy:.2%}  robust {m.robust_accuracy:.2%}  -> {path}"


def model_info(mid: str, defense: Any, parts: CLIPParts, checkpoint: str | None,
               text_tower_sha256: str | None) -> ModelInfo:
    """What a record says of the evaluated model: its id, weights, the defense's code and settings, notes."""
    notes = list(dict.fromkeys([*parts.source.get("notes", []), *getattr(defense, "notes", ())]))
    return ModelInfo(id=mid, defense=defense.name, architecture=parts.portable_architecture(),
                     pretrained=parts.portable_pretrained(),
                     checkpoint=parts.portable_checkpoint(checkpoint),  # no machine-local paths
                     checkpoint_sha256=parts.source.get("checkpoint_sha256"),
                     weights_sha256=parts.source.get("weights_sha256"), tensors_sha256=parts.tensors_sha256(),
                     text_tower_sha256=text_tower_sha256, image_size=parts.image_size,
                     hparams=parts.source.get("hparams", {}), notes=notes, origin=provenance(defense),
                     inference=defense.inference_identity())


def _record(plan: Plan, name: str, evalset: EvalSet, indices: Sequence[int], mid: str, defense: Any,
            parts: CLIPParts, checkpoint: str | None, head_info: dict[str, Any], flags: dict[str, np.ndarray],
            infos: dict[str, list[str]], timing: dict[str, float], env: Env) -> ResultRecord:
    """The result record of one evaluated dataset: what was evaluated, how, on what, and what it measured."""
    info, specs, wall = evalset.info, plan.specs, timing["wall_s"]
    return ResultRecord(
        zsrbench_version=zsrbench.__version__, git_sha=git_sha(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model=model_info(mid, defense, parts, checkpoint, head_info["text_tower_sha256"]),
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
            attack_mode=plan.attack_mode,
            skipped_files=list(evalset.skipped),
            text_head={"sha256": head_info["text_head_sha256"], "source": head_info["text_head_source"]}),
        metrics=metrics_from_flags(flags, info.num_classes, [s.name for s in specs]),
        flags=Flags(**infos),
        env=env,
        timing={"wall_s": round(wall, 3), "images_per_s": round(len(indices) / wall, 3) if wall > 0 else 0.0,
                **{k: round(v, 3) for k, v in timing.items() if k != "wall_s"}},
    )


def finish_dataset(plan: Plan, job: Job, mid: str, defense: Any, parts: CLIPParts, checkpoint: str | None,
            head_info: dict[str, Any], log: Callable[[str], None] | None) -> None:
    """Assemble ``job``'s record from its units, write it (with its flags) and drop the units."""
    flags, infos, timing = assemble([job.done[k] for k in range(len(job.bounds))], [s.name for s in plan.specs])
    if plan.n_samples is not None and plan.n_samples > len(job.evalset):
        infos["notes"].append(f"{plan.n_samples} samples asked for; the dataset has {len(job.evalset)}: all of them "
                              "were evaluated")
    if job.evalset.skipped:
        infos["notes"].append(f"{len(job.evalset.skipped)} image(s) left out because they do not decode "
                              "(--skip-broken-images); listed in protocol.skipped_files")
    record = _record(plan, job.name, job.evalset, job.indices, mid, defense, parts, checkpoint, head_info,
                     flags, infos, timing, environment(plan.device, plan.cfg.compile))
    path = write_result(plan.cfg.results_dir, record, flags)
    job.result = DatasetResult(path=path, record=read_record(path))
    job.store.clear()
    if log:
        log(_done_line(record, path))
