"""A sweep's grid file: the TOML grid read and checked key by key and type by type (:func:`load_grid`), the
sweep's name, and the grid expanded into one :class:`~zsrbench.evaluation.config.RunConfig` per job
(:func:`expand`). ``docs/sweeps.md`` shows a grid.
"""

from __future__ import annotations

import difflib
import itertools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zsrbench import paths
from zsrbench.eps import parse_eps
from zsrbench.errors import ZsrError
from zsrbench.evaluation.config import RunConfig

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
WORDS = {str: "a string", int: "a whole number", float: "a number", bool: "true or false", list: "a list",
         dict: "a table"}
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
    """The grid file at ``path``, every key and type checked (names are checked by
    :func:`zsrbench.evaluation.sweep.prepare`)."""
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


# ---------------------------------------------------------------------------------------------------- expansion
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
