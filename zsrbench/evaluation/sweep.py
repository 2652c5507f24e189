"""Sweeps: a TOML grid of defenses × attack suites × ε × protocols, one :func:`zsrbench.evaluation.runner.run` per job,
submitted through submitit (a slurm cluster, local processes, or this process with ``debug``).

The whole grid is checked before anything is submitted or written (each job as `zsrbench run` checks it before
it builds a model, its checkpoint included); jobs whose entry the leaderboard already holds are skipped. A job is
:class:`submitit.helpers.Checkpointable`: preempted or timed out, it is requeued with ``resume=True`` and goes on
from the datasets it finished. ``docs/sweeps.md`` shows a grid.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import re
import shutil
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import submitit
from submitit.core.utils import DelayedSubmission

from zsrbench import paths
from zsrbench.eps import parse_eps
from zsrbench.errors import ZsrError
from zsrbench.paths import check_output_dir
from zsrbench.evaluation.config import RunConfig, check_config

EXECUTORS = ("slurm", "local", "debug")
LISTS = ("defenses", "attacks", "protocols", "eps")
TOP = {"name": (str,), "defenses": (list, str), "attacks": (list, str), "protocols": (list, str),
       "eps": (list, int, float, str), "run": (dict,), "executor": (dict,)}
RUN = {"model": (str,), "pretrained": (str,), "checkpoint": (str,), "checkpoint_sha256": (str,),
       "trust_checkpoint": (bool,), "datasets": (list, str), "data_root": (str,), "download": (bool,),
       "skip_broken_images": (bool,), "n_samples": (int,), "subset": (str,), "seed": (int,), "batch_size": (int,),
       "device": (str,), "precision": (str,), "results_dir": (str,), "leaderboard_dir": (str,),
       "num_workers": (int,), "jobs": (int, str),
       # attack parameters (as `zsrbench run --step/--steps/...`)
       "step": (int, float), "steps": (int,), "restarts": (int,), "eot": (int,), "kappa": (int, float),
       "criterion": (str,)}
ATTACK_PARAMS = ("step", "steps", "restarts", "eot", "kappa", "criterion")
EXECUTOR = {"time": (int,), "mem_gb": (int, float), "cpus_per_task": (int,), "gpus_per_node": (int,),
            "tasks_per_node": (int,), "nodes": (int,), "partition": (str,), "account": (str,), "qos": (str,),
            "constraint": (str,), "array_parallelism": (int,), "setup": (list,)}
SLURM_ONLY = ("tasks_per_node", "nodes", "partition", "account", "qos", "constraint", "array_parallelism", "setup")
WORDS = {str: "a string", int: "a whole number", float: "a number", bool: "true or false", list: "a list",
         dict: "a table"}
LOCAL_MINUTES = 24 * 60  # local jobs: submitit's default limit (2 minutes) would stop an evaluation early
CONFIRM_ABOVE = 500  # a sweep that would submit more jobs asks for confirmation (or --yes); docs/sweeps.md
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a sweep's name: one plain folder name under RESULTS_DIR/sweeps
NAME_LONGEST = 100


# ---------------------------------------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class Grid:
    path: Path
    name: str
    defenses: tuple[str, ...]
    suites: tuple[tuple[str, ...], ...]
    protocols: tuple[str, ...]
    eps: tuple[float | None, ...]
    run: dict[str, Any]
    executor: dict[str, Any]
    name_note: str | None = None  # said when the name was made from the file's name


def load_grid(path: str | Path) -> Grid:
    """The grid file at ``path``, every key and type checked (names are checked by :func:`prepare`)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ZsrError(f"Cannot read the grid file {path}: {exc.strerror or exc}. Pass a TOML file "
                       "(docs/sweeps.md shows one).") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ZsrError(f"{path} is not valid TOML: {exc}. Fix the file (docs/sweeps.md shows a grid).") from exc
    _check_keys(path, "the top level", data, TOP)
    _check_keys(path, "[run]", data.get("run", {}), RUN)
    _check_keys(path, "[executor]", data.get("executor", {}), EXECUTOR)
    missing = [k for k in ("defenses", "attacks", "protocols") if k not in data]
    if missing:
        raise ZsrError(f"{path} names no {', '.join(missing)}: a grid lists defenses, attacks (suites such as "
                       "\"pgd,cw\") and protocols, e.g. defenses = [\"clip\", \"tecoa\"].")
    lists = {k: _as_list(path, k, data.get(k)) for k in LISTS}
    name, note = grid_name(path, data.get("name"))
    return Grid(path=path, name=name, name_note=note, defenses=tuple(lists["defenses"]),
                suites=tuple(_suite(path, s) for s in lists["attacks"]), protocols=tuple(lists["protocols"]),
                eps=tuple(parse_eps(e, f"{path}: eps") for e in lists["eps"]) or (None,), run=dict(data.get("run", {})),
                executor=dict(data.get("executor", {})))


def is_plain_name(name: str) -> bool:
    """``name`` is one plain folder name: letters, digits, ``.``, ``_`` and ``-``, first a letter or digit (so
    never ``..``, a hidden name, an absolute path or a path of several folders), at most 100 characters."""
    return len(name) <= NAME_LONGEST and NAME_RE.fullmatch(name) is not None


def slug(text: str) -> str:
    """``text`` made a plain folder name (see :func:`is_plain_name`): other characters become ``-``."""
    made = re.sub(r"[^A-Za-z0-9._-]+", "-", text)
    made = re.sub(r"^[^A-Za-z0-9]+", "", made)[:NAME_LONGEST].rstrip("-")
    return made or "sweep"


def grid_name(path: Path, given: str | None) -> tuple[str, str | None]:
    """The sweep's name, which names its folder (RESULTS_DIR/sweeps/<name>) and its slurm jobs, and a note when
    it was made from the file's name. A ``name`` in the grid must be a plain folder name; a file name that is not
    one is made one (and said)."""
    if given is not None:
        if not is_plain_name(given):
            raise ZsrError(f"{path}: name = {given!r} is not a plain folder name. The sweep's files go to "
                           f"RESULTS_DIR/sweeps/<name>, so a name holds only letters, digits, '.', '_' and '-' (first "
                           f"a letter or digit, at most {NAME_LONGEST} characters; no '/', no '..'): e.g. name = "
                           f"\"{slug(given)}\". Use --folder to put the sweep's files elsewhere.")
        return given, None
    if is_plain_name(path.stem):
        return path.stem, None
    made = slug(path.stem)
    return made, (f"the grid file's name '{path.stem}' is not a plain folder name, so the sweep is named '{made}' "
                  "(set name = \"...\" in the grid to choose another)")


def _check_keys(path: Path, where: str, table: dict[str, Any], valid: dict[str, tuple[type, ...]]) -> None:
    for key, value in table.items():
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ZsrError(f"{path}: unknown key '{key}' in {where}.{hint} Valid keys there: {', '.join(valid)}.")
        types = valid[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            wanted = " or ".join(WORDS[t] for t in types)
            raise ZsrError(f"{path}: '{key}' in {where} must be {wanted}; got {value!r}.")
        if where != "the top level" and isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise ZsrError(f"{path}: '{key}' in {where} lists strings, e.g. {key} = [\"a\", \"b\"]; got {value!r}.")
        if any("\x00" in v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)):
            raise ZsrError(f"{path}: '{key}' in {where} holds a NUL character (\\u0000), which no name or path may "
                           "hold; remove it.")


def _as_list(path: Path, key: str, value: Any) -> list[Any]:
    items = [] if value is None else value if isinstance(value, list) else [value]
    for item in items:
        ok = isinstance(item, (int, float, str)) and not isinstance(item, bool) if key == "eps" else (
            isinstance(item, (str, list)) if key == "attacks" else isinstance(item, str))
        if not ok:
            raise ZsrError(f"{path}: '{key}' lists {item!r}; " + ("ε values are numbers in units of 1/255 or "
                           "fractions, e.g. eps = [1, \"4/255\"]." if key == "eps" else f"list names, e.g. {key} = [\"{_EXAMPLE[key]}\"]."))
    if value is not None and not items:
        raise ZsrError(f"{path}: '{key}' is an empty list; name at least one, or leave out eps for the protocol's.")
    return items


_EXAMPLE = {"defenses": "clip", "attacks": "pgd,cw", "protocols": "micro"}


def _suite(path: Path, item: str | list[Any]) -> tuple[str, ...]:
    names = item.split(",") if isinstance(item, str) else item
    if not all(isinstance(n, str) for n in names):
        raise ZsrError(f"{path}: the attack suite {item!r} must list attack names, e.g. \"pgd,cw\" or [\"pgd\", \"cw\"].")
    return tuple(n.strip() for n in names if n.strip())


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


@dataclass(frozen=True)
class SweepPlan:
    grid: Grid
    executor: str
    folder: Path
    todo: list[Job]
    skipped: list[Job]


def expand(grid: Grid) -> list[RunConfig]:
    """The cartesian product protocols × defenses × suites × ε, one :class:`RunConfig` each."""
    base = _base_options(grid.run)
    return [RunConfig(defense=d, protocol=p, attacks=s, eps=e, **base)
            for p, d, s, e in itertools.product(grid.protocols, grid.defenses, grid.suites, grid.eps)]


def _base_options(run: dict[str, Any]) -> dict[str, Any]:
    opts = {k: v for k, v in run.items() if k not in ATTACK_PARAMS}
    if isinstance(opts.get("datasets"), str):
        opts["datasets"] = [d.strip() for d in opts["datasets"].split(",") if d.strip()]
    if "datasets" in opts:
        opts["datasets"] = tuple(opts["datasets"])
    if "jobs" in opts:
        opts["jobs"] = _jobs(opts["jobs"])
    opts.setdefault("results_dir", str(paths.results_dir()))
    opts.setdefault("leaderboard_dir", str(paths.leaderboard_dir()))
    for k in ("results_dir", "leaderboard_dir", "data_root"):  # jobs may start in another folder
        if k in opts:
            opts[k] = str(Path(opts[k]).expanduser().absolute())
    if "checkpoint" in opts and _exists(opts["checkpoint"]):
        opts["checkpoint"] = str(Path(opts["checkpoint"]).expanduser().absolute())
    return {**opts, "attack_params": {k: run[k] for k in ATTACK_PARAMS if k in run}}


def _exists(text: str) -> bool:
    try:
        return Path(text).expanduser().exists()
    except OSError:  # (too long to look up: check_checkpoint says so)
        return False


def _jobs(value: int | str) -> int | None:
    if value == "auto":
        return None
    if isinstance(value, int) and value >= 1:
        return value
    raise ZsrError(f"'jobs' under [run] is a number of processes (1 or more) or \"auto\"; got {value!r}.")


def prepare(path: str | Path, executor: str, folder: str | Path | None = None) -> SweepPlan:
    """Read and check the grid and the executor, expand the jobs and set aside those already measured.

    Raises :class:`ZsrError` before anything is written when anything is wrong.
    """
    from zsrbench.registry import load_builtins

    grid = load_grid(path)
    check_executor(executor, grid.executor)
    load_builtins()
    _check_names(grid)
    cfgs = expand(grid)
    jobs = [_checked_job(grid, cfg, executor, f"job {i} of {len(cfgs)}") for i, cfg in enumerate(cfgs, 1)]
    _check_unique(grid, jobs)
    out = Path(folder) if folder is not None else Path(jobs[0].cfg.results_dir) / "sweeps" / grid.name
    check_output_dir(out, "--folder", "Sweep folder")
    _probe(out, "--folder")  # (a whole path longer than the filesystem allows)
    done = measured_keys(jobs)
    return SweepPlan(grid=grid, executor=executor, folder=out.absolute(),
                     todo=[j for j in jobs if j.key not in done], skipped=[j for j in jobs if j.key in done])


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
            _probe(Path(folder), option)  # (a whole path longer than the filesystem allows)
        check_checkpoint(cfg)
        key = skip_key(cfg, _variant(cfg, protocol, specs, params))
    except ZsrError as exc:
        raise ZsrError(f"{grid.path}: {which} ({label}): {exc}") from None
    return Job(cfg=cfg, label=f"{key.protocol} · {key.defense} · {key.suite} · {key.eps}", key=key)


def _probe(path: Path, option: str, what: str = "folder") -> bool:
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
    if _probe(path, option):  # a folder written by `zsrbench train` (or an open_clip local-dir)
        check_model_folder(path)
        return
    if not _probe(path, option, what="file"):
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
        if not _probe(Path(root), "leaderboard_dir under [run]"):
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


# ---------------------------------------------------------------------------------------------------- executors
def check_executor(kind: str, options: dict[str, Any]) -> None:
    if kind not in EXECUTORS:
        close = difflib.get_close_matches(kind, EXECUTORS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ZsrError(f"Unknown executor '{kind}'.{hint} Use --executor with one of: {', '.join(EXECUTORS)}.")
    if kind != "slurm":
        return
    missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
    if missing:
        raise ZsrError(f"--executor slurm needs slurm's {' and '.join(missing)} on PATH, and this machine has none: "
                       "submit from a slurm login node, or use --executor local to run the jobs here.")
    if "time" not in options:
        raise ZsrError("--executor slurm needs a time limit: add `time = MINUTES` under [executor] in the grid "
                       "(a preempted or timed-out job is requeued and resumes).")


def executor_parameters(kind: str, options: dict[str, Any], name: str) -> dict[str, Any]:
    """The grid's [executor] table as submitit.AutoExecutor parameters (slurm-only ones prefixed ``slurm_``)."""
    params: dict[str, Any] = {"name": f"zsrbench-{name}",
                              "timeout_min": options.get("time", LOCAL_MINUTES if kind == "local" else None)}
    for key, value in options.items():
        if key != "time":
            params[f"slurm_{key}" if key in SLURM_ONLY else key] = value
    return {k: v for k, v in params.items() if v is not None}


def make_executor(plan: SweepPlan) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=plan.folder, cluster=plan.executor)
    executor.update_parameters(**executor_parameters(plan.executor, plan.grid.executor, plan.grid.name))
    return executor


def submit(plan: SweepPlan) -> list[Any]:
    """Submit the plan's jobs (one slurm array); the submitit jobs, in the plan's order."""
    if not plan.todo:
        return []
    import subprocess

    executor = make_executor(plan)
    try:
        with executor.batch():
            jobs = [executor.submit(SweepJob(job.cfg)) for job in plan.todo]
    except (submitit.core.utils.FailedSubmissionError, subprocess.CalledProcessError, OSError) as exc:
        raise ZsrError(f"Submitting the sweep's jobs failed: {str(exc).strip() or type(exc).__name__}. Check the "
                       f"[executor] settings of {plan.grid.path}; submitit's files are under {plan.folder}.") from exc
    return jobs


class SweepJob(submitit.helpers.Checkpointable):
    """One `zsrbench run`; preempted or timed out, it is requeued with ``resume=True``."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    def __call__(self) -> list[str]:
        from zsrbench.evaluation.runner import run

        _export_ranks()
        _train_first(self.cfg)
        return [str(r.path) for r in run(self.cfg, progress=False, log=print)]

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        return DelayedSubmission(SweepJob(replace(self.cfg, resume=True)))


def _export_ranks() -> None:
    """A job of several tasks (slurm tasks_per_node, nodes) is one run over torch.distributed ranks: export
    RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (every rank keeps all the node's GPUs visible and
    takes cuda:LOCAL_RANK)."""
    try:
        tasks = submitit.JobEnvironment().num_tasks
    except RuntimeError:  # not inside a submitit job
        return
    if tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def _train_first(cfg: RunConfig) -> None:
    """Fine-tune a defense trained on demand under a lock, so jobs sharing it train it once, not together."""
    from filelock import FileLock

    from zsrbench.registry import DEFENSES, PROTOCOLS, load_builtins
    from zsrbench.evaluation.config import check_device
    from zsrbench.training.on_demand import ensure_trained, on_demand_dir

    load_builtins()  # (a fresh process)
    defense, protocol = DEFENSES.get(cfg.defense), PROTOCOLS.get(cfg.protocol)
    if cfg.checkpoint is not None or not defense.trainable or not protocol.train_on_demand:
        return
    seed = protocol.seed if cfg.seed is None else cfg.seed
    out = on_demand_dir(defense.name, protocol, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        ensure_trained(defense.name, protocol, seed=seed, device=check_device(cfg.device), log=print)


# ---------------------------------------------------------------------------------------------------- outcomes
def outcome(job: Any) -> tuple[bool, str]:
    """Wait for ``job``: (True, "done: N records") or (False, the first line of its error)."""
    exc = job.exception()  # (the debug executor runs the job here)
    if exc is None:
        return True, f"done: {len(job.result())} records"
    return False, first_line(exc)


def first_line(exc: BaseException) -> str:
    """The first line of the job's own error: from a submitit trace, the line after the last frame."""
    lines = str(exc).splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    if not frames:
        return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()
    rest = [line for line in lines[frames[-1] + 1:] if line.strip() and not line.startswith((" ", "\t"))]
    return rest[0] if rest else lines[-1]


def landed(jobs: Sequence[Job]) -> int:
    """How many of ``jobs`` have a measured entry in their leaderboard now."""
    return len(measured_keys(jobs))
