"""The training loop, stage by stage: plan (everything checked, nothing built) → build (models, data, text heads)
→ optimisation (optimiser, schedule, training adversary) → resume (the last checkpoint) → epochs (one step per
batch, checkpoints, stops) → outputs (the folder and its manifest)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zsrbench.errors import ZsrError
from zsrbench.training.batches import epoch_loader, epoch_order
from zsrbench.training.checkpoint import resume, save_checkpoint
from zsrbench.training.determinism import pinned_threads
from zsrbench.training.outputs import finish
from zsrbench.training.schedule import Optimisation, optimisation
from zsrbench.training.setup import Built, Job, build, device_of, finished, plan


@dataclass
class TrainResult:
    out_dir: Path
    manifest: dict[str, Any]
    completed: bool = True  # False when stopped early (stop_after_*): resume by calling again


class StopTraining(Exception):
    """Raise from a ``callback`` to stop after the current step (a checkpoint is written first)."""


@dataclass
class Run:
    """Where a run is: its step, its loss curve, the steps it resumed at, and how it stopped."""

    step: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)
    steps_this_run: int = 0
    epochs_this_run: int = 0
    stopped: bool = False
    started: float = field(default_factory=time.time)


def train_defense(defense_name: str, **kwargs: Any) -> TrainResult:
    """Fine-tune CLIP's visual encoder with defense ``defense_name`` on the protocol's training set, with the
    threads pinned (:func:`zsrbench.training.determinism.pinned_threads`): the same recipe and seed give the same
    weights on any machine of the same kind.

    Keyword arguments: ``protocol`` (default tga16), ``model``, ``pretrained``, ``data_root``, ``out_dir``
    (required), ``hparams`` (or extra keywords, e.g. ``alpha=0.1``: any of the defense's hyper-parameters; values
    may be CLI strings), the shortcuts ``steps``, ``epochs``, ``batch_size``, ``lr``, ``eps``, then ``seed``,
    ``device``, ``resume`` (default True: a finished folder is returned as it is, an unfinished one resumes;
    False starts over), ``checkpoint_every`` (steps; one is always written at the end of every epoch),
    ``stop_after_epochs``/``stop_after_steps`` (stop early after a checkpoint, ``completed=False``),
    ``callback`` (called after every step with its record; may raise :class:`StopTraining`), ``num_workers``,
    ``keep_checkpoints``, ``text_cache`` (default False: the heads are computed under the pinned threads),
    ``progress``.
    """
    with pinned_threads(device_of(kwargs.get("device", "cpu"))) as determinism:
        job = plan(defense_name, determinism=determinism, **kwargs)
        done = finished(job)
        if done is not None:
            return TrainResult(job.out, done, True)
        built = build(job)
        opt = optimisation(job, built)
        run = Run()
        resume(job, built, opt, run)
        _epochs(job, built, opt, run)
        manifest, completed = finish(job, built, opt, run)
        return TrainResult(job.out, manifest, completed)


def _epochs(job: Job, built: Built, opt: Optimisation, run: Run) -> None:
    """Train from ``run.step`` until the budget, a callback or a stop asks to stop (with a progress bar)."""
    bar = _progress_bar(job, built, run)
    run.started = time.time()
    try:
        while run.step < built.total and not run.stopped:
            epoch, pos = run.step // built.bpe, run.step % built.bpe
            order = epoch_order(built.n, job.seed, epoch)
            loader = epoch_loader(built.train_set.dataset, order, job.hp.batch_size, pos, built.bpe, job.num_workers,
                                  job.dev.type == "cuda")
            for xb, yb, ib in loader:
                record = _step(job, built, opt, run, xb, yb, ib, epoch)
                if bar is not None:
                    bar[0].update(bar[1], completed=run.step, loss=f"loss {record['loss']:.4f}")
                if _after_step(job, built, opt, run, record):
                    break
    finally:
        if bar is not None:
            bar[0].stop()


def _step(job: Job, built: Built, opt: Optimisation, run: Run, xb: Any, yb: Any, ib: Any, epoch: int) -> dict[str, Any]:
    """One optimiser step on one batch; returns its line of the loss curve."""
    from zsrbench.defenses.base import TrainBatch, same_kernels

    dev = job.dev
    x = xb.to(dev, non_blocking=True).float()
    y = torch.as_tensor(yb).to(dev, non_blocking=True).long()
    batch = TrainBatch(x=x, y=y, index=torch.as_tensor(ib), texts=built.texts)
    lr_now = opt.scheduler.set(run.step)
    built.clf.train()
    built.frozen.eval()
    with torch.autocast(device_type=dev.type, dtype=job.amp_dtype, enabled=job.amp_dtype is not None), same_kernels():
        out_loss = job.defense.loss(batch, built.clf, built.frozen, opt.adversary)
    opt.optimizer.zero_grad(set_to_none=True)  # nothing from the attack reaches the update
    loss_value = out_loss.total.float()
    if not torch.isfinite(loss_value.detach()):
        raise ZsrError(f"The training loss became {float(loss_value)} at step {run.step}; lower the learning rate or "
                       "use --precision fp32.")
    if opt.scaler is not None:
        opt.scaler.scale(loss_value).backward()
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
    else:
        loss_value.backward()
        opt.optimizer.step()
    opt.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    run.steps_this_run += 1
    record = {"step": run.step, "epoch": epoch, "lr": lr_now, "loss": float(loss_value.detach()),
              **{k: float(v) for k, v in out_loss.terms.items()}}
    run.curve.append(record)
    return record


def _after_step(job: Job, built: Built, opt: Optimisation, run: Run, record: dict[str, Any]) -> bool:
    """Checkpoints and stops after a step; True when the epoch's batches end here."""
    end_of_epoch = run.step % built.bpe == 0 or run.step >= built.total
    if end_of_epoch or (job.checkpoint_every and run.step % int(job.checkpoint_every) == 0):
        save_checkpoint(job, built, opt, run)
    if job.callback is not None:
        try:
            job.callback({**record, "end_of_epoch": end_of_epoch, "total_steps": built.total})
        except StopTraining:
            return _stop(job, built, opt, run, end_of_epoch)
    if job.stop_after_steps is not None and run.steps_this_run >= job.stop_after_steps and run.step < built.total:
        return _stop(job, built, opt, run, end_of_epoch)
    run.epochs_this_run += int(run.step % built.bpe == 0)
    if job.stop_after_epochs is not None and run.epochs_this_run >= job.stop_after_epochs and run.step < built.total:
        run.stopped = True
        return True
    return run.step >= built.total


def _stop(job: Job, built: Built, opt: Optimisation, run: Run, end_of_epoch: bool) -> bool:
    if not end_of_epoch:  # (the end of an epoch was just checkpointed)
        save_checkpoint(job, built, opt, run)
    run.stopped = True
    return True


def _progress_bar(job: Job, built: Built, run: Run) -> tuple[Any, Any] | None:
    if not job.progress:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from zsrbench.log import make_console

    bar = Progress(TextColumn(f"train {job.defense.name}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.fields[loss]}"), console=make_console(stderr=True))
    task = bar.add_task("train", total=built.total, completed=run.step, loss="")
    bar.start()
    return bar, task
