"""A sweep's jobs: each :class:`~zsrbench.evaluation.config.RunConfig` of the grid checked as `zsrbench run`
checks it before it builds a model (:func:`checked_jobs`), and the key of the leaderboard entry it would
measure (:func:`skip_key`), so that jobs whose entry the leaderboard already holds are set aside
(:func:`measured_keys`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from zsrbench.errors import ZsrError
from zsrbench.paths import check_output_dir
from zsrbench.evaluation.config import RunConfig, check_config
from zsrbench.evaluation.sweep_grid import Grid, expand


# ---------------------------------------------------------------------------------------------------- jobs
class SkipKey(NamedTuple):
    protocol: str
    version: int
    defense: str
    suite: str
    eps: str  # "k/255"
    subset: str | None
    datasets: frozenset[str]
    model: str | None  # only when the grid names one
    checkpoint_sha256: str | None  # only when the grid names a checkpoint ("?": unknown before the run)
    variant: str | None = None  # settings that differ from the protocol's (an experiment: an entry of its own)


@dataclass(frozen=True)
class Job:
    cfg: RunConfig
    label: str  # protocol · defense · suite · ε
    key: SkipKey  # what a measured leaderboard entry must match for the job to be skipped


def checked_jobs(grid: Grid, executor: str) -> list[Job]:
    """The grid's jobs (:func:`~zsrbench.evaluation.sweep_grid.expand`), its names and each job checked, and no
    two the same evaluation. Needs the built-in names registered."""
    _check_names(grid)
    cfgs = expand(grid)
    jobs = [_checked_job(grid, cfg, executor, f"job {i} of {len(cfgs)}") for i, cfg in enumerate(cfgs, 1)]
    _check_unique(grid, jobs)
    return jobs


def _check_names(grid: Grid) -> None:
    from zsrbench.registry import ATTACKS, DEFENSES, PROTOCOLS

    for key, registry, names in (("protocols", PROTOCOLS, grid.protocols), ("defenses", DEFENSES, grid.defenses),
                                 ("attacks", ATTACKS, [a for s in grid.suites for a in s])):
        for name in names:
            try:
                registry.get(name)
            except ZsrError as exc:
                raise ZsrError(f"{grid.path}: '{key}': {exc}") from None


def _checked_job(grid: Grid, cfg: RunConfig, executor: str, which: str = "job") -> Job:
    """``cfg`` checked as `zsrbench run` checks it before it builds a model (:func:`check_config`, the output
    folders, the checkpoint; on slurm, the device is the compute node's business). An error names the job (its
    protocol, defense, suite and ε) and its position in the grid."""
    label = _label(cfg)  # until the names are resolved
    try:
        protocol, specs, _, params = check_config(replace(cfg, device=None) if executor == "slurm" else cfg)
        for folder, option, what in ((cfg.results_dir, "results_dir under [run]", "Results directory"),
                                     (cfg.leaderboard_dir, "leaderboard_dir under [run]", "Leaderboard folder")):
            check_output_dir(folder, option, what)
            probe_path(Path(folder), option)  # (a whole path longer than the filesystem allows)
        check_checkpoint(cfg)
        key = skip_key(cfg, _variant(cfg, protocol, specs, params))
    except ZsrError as exc:
        raise ZsrError(f"{grid.path}: {which} ({label}): {exc}") from None
    return Job(cfg=cfg, label=f"{key.protocol} · {key.defense} · {key.suite} · {key.eps}", key=key)


def probe_path(path: Path, option: str, what: str = "folder") -> bool:
    """Whether ``path`` is a folder (or exists, ``what="file"``); a path the filesystem cannot look up (longer
    than it allows) is a :class:`ZsrError` naming ``option``."""
    from zsrbench.leaderboard.atomic import probe

    return probe(Path(path).expanduser(), option=option, what=what)


def check_checkpoint(cfg: RunConfig) -> None:
    """The job's checkpoint is there as `zsrbench run` looks for it when it loads the model (a published name, a
    ``local-dir:`` or ``zsrbench train`` folder, an ``hf-hub:`` id or a weights file, with its sha256 when one is
    given), so a sweep never submits a job that would stop at its first step. (:func:`check_config` checked the
    names of shipped models.)"""
    from zsrbench.models import catalogue
    from zsrbench.models import shipped
    from zsrbench.paths import resolve_portable
    from zsrbench.registry import DEFENSES
    from zsrbench.models.weights import check_model_folder, check_sha256_text

    if cfg.checkpoint is None or cfg.checkpoint.startswith(shipped.PREFIX):
        return
    option = "checkpoint under [run]"
    text = resolve_portable(cfg.checkpoint)  # (a ``cache:`` name of a record)
    entry = catalogue.lookup(text)
    if entry is not None:
        defense = DEFENSES.get(cfg.defense)
        if getattr(defense, "trainable", False) and entry.defense != defense.name:
            if entry.defense == "clip":  # its method is none of zsrbench's defenses: plain CLIP weights
                raise ZsrError(f"Checkpoint '{entry.name}' is not a {defense.name} checkpoint: it is published CLIP "
                               "weights of a method zsrbench has no defense for. List it with defense clip.")
            raise ZsrError(f"Checkpoint '{entry.name}' is a published {entry.defense} checkpoint, not {defense.name}. "
                           f"List it with defense {entry.defense} (or clip, to evaluate it without a label).")
        return
    if text.startswith("local-dir:"):
        check_model_folder(Path(text.split(":", 1)[1]))
        return
    if text.startswith("hf-hub:"):
        if cfg.checkpoint_sha256:
            raise ZsrError(f"checkpoint_sha256 cannot be checked for {text}: open_clip downloads it itself. Download "
                           "the repository and name its folder as checkpoint, or drop checkpoint_sha256.")
        return
    path = Path(text).expanduser()
    if probe_path(path, option):  # a folder written by `zsrbench train` (or an open_clip local-dir)
        check_model_folder(path)
        return
    if not probe_path(path, option, what="file"):
        raise ZsrError(f"Checkpoint file {path} does not exist. Name a .pt/.pth visual-encoder checkpoint, a folder "
                       "written by `zsrbench train` or a published checkpoint name as checkpoint under [run].")
    if cfg.checkpoint_sha256 is not None:
        want, got = check_sha256_text(cfg.checkpoint_sha256), _file_sha(str(path))
        if got != want:
            raise ZsrError(f"Checkpoint {path} has sha256 {got}, but {want} was expected (checkpoint_sha256 under "
                           "[run]): the file is not the one you named (corrupt or a different version). Download it "
                           "again or drop checkpoint_sha256.")


def _label(cfg: RunConfig) -> str:
    eps = "the protocol's ε" if cfg.eps is None else f"ε={cfg.eps:g}/255"
    return f"{cfg.protocol} · {cfg.defense} · {'+'.join(cfg.attacks)} · {eps}"


def _check_unique(grid: Grid, jobs: Sequence[Job]) -> None:
    seen: dict[SkipKey, str] = {}
    for job in jobs:
        if job.key in seen:
            raise ZsrError(f"{grid.path}: jobs {seen[job.key]} and {job.label} are the same evaluation; list each "
                           "defense, suite, ε and protocol once.")
        seen[job.key] = job.label


# ---------------------------------------------------------------------------------------------------- skipping
def _variant(cfg: RunConfig, protocol: Any, specs: Any, params: dict[str, dict[str, Any]]) -> str | None:
    """The variant name `zsrbench run` gives ``cfg``'s records and entry (None: the protocol's standard settings)."""
    from zsrbench.evaluation.config import resolve_subset, run_variant

    seed = protocol.seed if cfg.seed is None else cfg.seed
    return run_variant(cfg, protocol, specs, params, seed, resolve_subset(cfg, protocol))


def skip_key(cfg: RunConfig, variant: str | None = None) -> SkipKey:
    """What identifies the leaderboard entry ``cfg`` measures (the runner names it by its model's digest, known
    only after the model is built: a job is matched by its defense, and its model and checkpoint if given; and by
    its ``variant``, so a job with other settings is never taken for an experiment already measured)."""
    from zsrbench.attacks.base import eps_text
    from zsrbench.registry import ATTACKS, DEFENSES, PROTOCOLS
    from zsrbench.evaluation.config import resolve_subset

    protocol = PROTOCOLS.get(cfg.protocol)
    suite = "+".join(ATTACKS.get(a).name for a in cfg.attacks)
    eps = eps_text(cfg.eps if cfg.eps is not None else protocol.eps)
    datasets = frozenset(cfg.datasets or protocol.datasets)
    return SkipKey(protocol.name, protocol.version, DEFENSES.get(cfg.defense).name, suite, eps,
                   resolve_subset(cfg, protocol), datasets, cfg.model, _checkpoint_sha(cfg), variant)


def _checkpoint_sha(cfg: RunConfig) -> str | None:
    """The sha256 an entry of ``cfg``'s checkpoint carries; "?" when it is not known before the run (a folder, a
    catalogue name): such a job is never skipped."""
    if cfg.checkpoint is None:
        return None
    if cfg.checkpoint_sha256 is not None:
        return cfg.checkpoint_sha256.strip().lower().removeprefix("sha256:")
    return _file_sha(cfg.checkpoint) if Path(cfg.checkpoint).is_file() else "?"


@functools.lru_cache(maxsize=None)
def _file_sha(path: str) -> str:
    from zsrbench.models.weights import sha256_file

    return sha256_file(path)


def measured_keys(jobs: Sequence[Job]) -> set[SkipKey]:
    """The keys of ``jobs`` that a measured entry of their leaderboard already holds."""
    from zsrbench.leaderboard.reading import load_store

    found: set[SkipKey] = set()
    for root, protocol in {(j.cfg.leaderboard_dir, j.key.protocol) for j in jobs}:
        if not probe_path(Path(root), "leaderboard_dir under [run]"):
            continue
        entries = [e.entry for e in load_store(root, protocol).entries if e.entry.kind == "measured"]
        found |= {j.key for j in jobs if j.cfg.leaderboard_dir == root and any(_holds(e, j.key) for e in entries)}
    return found


def _holds(entry: Any, key: SkipKey) -> bool:
    """Whether the measured ``entry`` is the one ``key``'s job would write, with all of its datasets."""
    p, m = entry.protocol, entry.model
    sha = (m.checkpoint_sha256 or "").lower().removeprefix("sha256:")
    return ((p.name, p.version, m.defense, entry.suite, entry.eps_text, p.subset, p.variant)
            == (key.protocol, key.version, key.defense, key.suite, key.eps, key.subset, key.variant)
            and key.datasets <= set(entry.measured.datasets)
            and key.model in (None, m.architecture) and key.checkpoint_sha256 in (None, sha))
