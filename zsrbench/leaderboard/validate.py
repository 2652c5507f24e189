"""``zsrbench validate``: every file against the schema, every number against the per-sample flags behind it.

Checks, for a leaderboard (``leaderboards/``) or a raw results directory (``results/``):

* each JSON file parses, migrates and validates against its schema (records and entries);
* each entry's content matches its ``digest`` (entries are immutable), its name and place in the store match
  its content, and the previous revision it names exists with the sha256 it names (history is intact);
* each record's flags sidecar exists, matches its sha256, and the accuracies recomputed from the flags equal the
  stored ones; each measured entry's numbers equal those of the records it references;
* reported entries only name datasets of their protocol;
* the newest revision of a measured entry, and the records it references, name no machine-local path in their
  model fields (an absolute path, ``~/…``, ``local-dir:/…``): records name a model folder in zsrbench's cache as
  ``cache:<path>`` and other files by their name (their sha256 identifies them). Older revisions that do are
  history (kept as written) and get one summary warning; ``zsrbench migrate-paths`` rewrites an entry whose
  newest revision is affected as a new revision;
* no leftovers of interrupted writes lie around: hidden temporary files and folders (``.*.tmp*``), revision
  folders without their entry file, flags sidecars without a record, empty files. Each is named with whether
  it can be deleted.

Symlinked folders are followed, as ``zsrbench table`` follows them. Nothing is ever modified.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel

from zsrbench import jsonio
from zsrbench.errors import ZsrError
from zsrbench.leaderboard import atomic
from zsrbench.leaderboard.entries import REV_DIR_RE, REV_FILE_RE, check_flags, read_entry, revision_files
from zsrbench.leaderboard.records import flags_from_bytes, parse_record
from zsrbench.leaderboard.schema import LeaderboardEntry, ResultRecord

MEAN_TOL = 1e-4  # per_dataset_mean is stored rounded to 4 decimals

# --- machine-local paths -------------------------------------------------------------------------------------
_LOCAL_VALUE = re.compile(r"^(?:local-dir:)?(?:/|~[\w.-]*(?:/|$)|[A-Za-z]:[\\/]|\\\\)")
# inside free text (notes, descriptions): a token that starts like an absolute path and has a second component
_LOCAL_IN_TEXT = re.compile(r"(?:^|[\s'\"(\[=,;])((?:local-dir:)?(?:~[\w.-]*/|/)[\w.@+-]+/[^\s'\")\],;]*)")
FREE_TEXT_FIELDS = ("notes", "description")


def is_machine_local(value: str) -> bool:
    """Whether ``value`` is (or, as text, contains) a path that only means something on one machine."""
    return bool(_LOCAL_VALUE.match(value.strip()) or _LOCAL_IN_TEXT.search(value))


def local_paths(model: BaseModel | dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``(field, value)`` of every string in a model's fields (``ModelInfo``/``EntryModel``, hyper-parameters and
    notes included) that names a machine-local path: an absolute path, ``~/…`` or ``local-dir:/…``."""
    data = model.model_dump(mode="json") if isinstance(model, BaseModel) else model
    out: list[tuple[str, str]] = []

    def walk(value: Any, where: str, text: bool) -> None:
        if isinstance(value, str):
            local = _LOCAL_IN_TEXT.search(value) if text else is_machine_local(value)
            if local:
                out.append((where, value))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}" if where else str(k), text or k in FREE_TEXT_FIELDS)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]", text)

    walk(data, prefix, False)
    return out


def _short(value: str, width: int = 72) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


@dataclass
class Problem:
    path: Path
    reason: str
    level: str = "error"  # "error" | "warning"
    kind: str = "invalid"  # "invalid" | "leftover" (of an interrupted write; an error too)


@dataclass
class Report:
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


def _sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def check_record(path: Path, expected_sha256: str | None = None) -> tuple[ResultRecord | None, list[str]]:
    """The record at ``path`` and the reasons it is bad (empty: good)."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        return None, [f"missing or unreadable ({exc.strerror or exc})"]
    if expected_sha256 is not None and _sha(blob) != expected_sha256:
        return None, ["sha256 differs from the one its leaderboard entry names (the record was changed)"]
    try:
        record = parse_record(jsonio.parse(blob, path, "result record"), path)
    except ZsrError as exc:
        return None, [str(exc).removeprefix(f"{path}: ")]
    except (KeyError, TypeError, AttributeError) as exc:  # a JSON file too far from any record version to migrate
        return None, [f"not a result record (the field {exc} is missing or malformed); if it is not one, move it "
                      "out of this folder"]
    reasons = []
    p = record.protocol
    if f"{round(p.eps * 255, 6):g}/255" != p.eps_text:
        reasons.append(f"protocol.eps {p.eps} does not match eps_text {p.eps_text}")
    if p.suite != "+".join(a.name for a in p.attacks):
        reasons.append(f"protocol.suite '{p.suite}' is not the attacks {'+'.join(a.name for a in p.attacks)}")
    if record.sidecar is None:
        return record, reasons + ["names no flags sidecar, so its numbers cannot be re-derived"]
    side = path.parent / record.sidecar.file
    try:
        sblob = side.read_bytes()
    except OSError as exc:
        return record, reasons + [f"flags sidecar {record.sidecar.file} is missing ({exc.strerror or exc})"]
    if _sha(sblob) != record.sidecar.sha256:
        return record, reasons + [f"flags sidecar {record.sidecar.file} does not match the sha256 the record names"]
    try:
        flags = flags_from_bytes(sblob, side)
    except ZsrError as exc:
        return record, reasons + [str(exc)]
    reasons += check_flags(record, flags)
    return record, reasons


def _safe_rel(base: Path, rel: str) -> Path | None:
    pp = PurePosixPath(rel)
    if pp.is_absolute() or ".." in pp.parts:
        return None
    return base / Path(*pp.parts)


def check_entry(path: Path, cache: dict[Path, tuple[ResultRecord | None, list[str]]] | None = None) -> list[str]:
    """Reasons the entry revision at ``path`` is bad (empty: good); machine-local paths are not checked here
    (see :func:`local_path_reasons`: only an entry's newest revision must be free of them)."""
    return _check_entry(path, {} if cache is None else cache)[1]


def local_path_reasons(entry: LeaderboardEntry, edir: Path,
                       cache: dict[Path, tuple[ResultRecord | None, list[str]]] | None = None) -> list[str]:
    """The machine-local paths in a measured entry's model fields and in those of the records it references,
    as one line per place (empty: none)."""
    if entry.kind != "measured" or entry.measured is None:
        return []
    cache = {} if cache is None else cache
    out = [f"entry model.{f} = {_short(v)!r}" for f, v in local_paths(entry.model)]
    by_field: dict[str, tuple[str, list[str]]] = {}
    for ds, m in entry.measured.datasets.items():
        rp = _safe_rel(edir, m.record.path)
        if rp is None:
            continue
        key = rp.resolve()
        if key not in cache:
            cache[key] = check_record(rp, m.record.sha256)
        record = cache[key][0]
        for f, v in local_paths(record.model) if record is not None else []:
            by_field.setdefault(f, (v, []))[1].append(ds)
    n = len(entry.measured.datasets)
    for f, (v, datasets) in by_field.items():
        which = f"all {n} records" if len(datasets) == n else ", ".join(datasets)
        out.append(f"records' model.{f}, e.g. {_short(v)!r}, in {which}")
    return out


def _check_entry(path: Path, cache: dict[Path, tuple[ResultRecord | None, list[str]]]
                 ) -> tuple[LeaderboardEntry | None, list[str]]:
    try:
        entry = read_entry(path)
    except ZsrError as exc:
        return None, [str(exc).removeprefix(f"{path}: ")]
    reasons: list[str] = []
    edir = path.parent
    if entry.previous is None:
        if entry.revision > 1:
            reasons.append(f"revision {entry.revision} names no previous revision")
    else:
        prev = _safe_rel(edir, entry.previous.file)
        if prev is None or not REV_FILE_RE.match(prev.name) or int(REV_FILE_RE.match(prev.name).group(1)) != entry.previous.revision:  # type: ignore[union-attr]
            reasons.append(f"previous revision reference {entry.previous.file!r} is malformed")
        elif entry.previous.revision >= entry.revision:
            reasons.append(f"previous revision {entry.previous.revision} is not older than {entry.revision}")
        elif not prev.is_file():
            reasons.append(f"previous revision {entry.previous.file} is missing: history was deleted")
        elif _sha(prev.read_bytes()) != entry.previous.sha256:
            reasons.append(f"previous revision {entry.previous.file} was changed after this revision was written "
                           "(sha256 differs)")
    if entry.kind == "measured":
        reasons += _check_measured(entry, edir, cache)
    elif entry.kind == "reported":
        reasons += _check_reported(entry)
    return entry, reasons


def _check_measured(entry: LeaderboardEntry, edir: Path, cache: dict) -> list[str]:
    assert entry.measured is not None
    out = []
    for ds, m in entry.measured.datasets.items():
        rp = _safe_rel(edir, m.record.path)
        sp = _safe_rel(edir, m.sidecar.path)
        if rp is None or sp is None:
            out.append(f"{ds}: file reference outside the entry directory")
            continue
        key = rp.resolve()
        if key not in cache:
            cache[key] = check_record(rp, m.record.sha256)
        record, reasons = cache[key]
        out += [f"{ds}: record {m.record.path}: {r}" for r in reasons]
        if record is None:
            continue
        if record.sidecar is None or rp.parent / record.sidecar.file != sp:
            out.append(f"{ds}: the entry's sidecar {m.sidecar.path} is not the record's")
        elif sp.is_file() and _sha(sp.read_bytes()) != m.sidecar.sha256:
            out.append(f"{ds}: sidecar {m.sidecar.path} does not match the sha256 the entry names")
        p = record.protocol
        want = (entry.protocol.name, entry.protocol.version, entry.model.id, entry.suite, entry.eps_text,
                entry.protocol.subset, entry.protocol.variant, ds)
        have = (p.name, p.version, record.model.id, p.suite, p.eps_text, p.subset, p.variant, p.dataset)
        if want != have:
            out.append(f"{ds}: record {m.record.path} is of {have}, not of this entry {want}")
        if record.metrics != m.metrics:
            diffs = [k for k in type(m.metrics).model_fields if getattr(record.metrics, k) != getattr(m.metrics, k)]
            out.append(f"{ds}: the entry's metrics ({', '.join(diffs)}) differ from those of its record")
        if record.flags != m.flags:
            out.append(f"{ds}: the entry's warnings/fallbacks differ from those of its record")
    return out


def _check_reported(entry: LeaderboardEntry) -> list[str]:
    assert entry.reported is not None
    out = []
    known = set(entry.protocol.datasets)
    for metric in ("clean", "robust"):
        nums = getattr(entry.reported, metric)
        if nums is None:
            continue
        unknown = [d for d in nums.per_dataset if d not in known]
        if unknown:
            out.append(f"reported {metric}: {', '.join(unknown)} not datasets of protocol {entry.protocol.name}")
        if nums.per_dataset and nums.per_dataset_mean is not None:
            mean = sum(nums.per_dataset.values()) / len(nums.per_dataset)
            if abs(mean - nums.per_dataset_mean) > MEAN_TOL / 2 + 1e-9:
                out.append(f"reported {metric}: per_dataset_mean {nums.per_dataset_mean} is not the mean of "
                           f"per_dataset ({mean:.4f})")
    if entry.reported.clean is None and entry.reported.robust is None:
        out.append("a reported entry without any numbers")
    return out


# --- leftovers of interrupted writes ---------------------------------------------------------------------------
LEFTOVER = "the leftover of an interrupted write (a full disk, a crash or a kill)"
UNLESS_WRITING = "unless a zsrbench command is writing here right now"
SIDECAR_SUFFIX = ".flags.npz"


def walk(root: Path, report: Report) -> list[Path]:
    """Every file and folder under ``root``, following symlinked folders as :func:`store.entry_dirs` and
    :func:`store.load_store` do (so every entry ``zsrbench table`` reads is checked; each real folder once, so a
    link loop ends). Hidden folders are not entered (a leftover temporary folder is reported, not its contents)."""
    out: list[Path] = []
    seen: set[Path] = set()

    def visit(d: Path) -> None:
        try:
            real = d.resolve()
            children = [] if real in seen else sorted(d.iterdir())
        except OSError as exc:
            report.problems.append(Problem(d, f"cannot be read ({exc.strerror or exc}); check its permissions"))
            return
        seen.add(real)
        for c in children:
            out.append(c)
            if c.is_dir() and not c.name.startswith("."):
                visit(c)

    visit(root)
    return out


def _raw_json(path: Path) -> Any:
    try:
        return jsonio.read(path)
    except ZsrError:
        return None


def referenced(edir: Path, cache: dict[Path, set[str]]) -> set[str]:
    """The file paths (relative to ``edir``) that the entry files in ``edir`` reference, read leniently (an entry
    file that does not parse references nothing; it is reported on its own)."""
    if edir not in cache:
        refs: set[str] = set()
        for _, f in revision_files(edir):
            data = _raw_json(f)
            datasets = ((data or {}).get("measured") or {}).get("datasets") if isinstance(data, dict) else None
            for m in (datasets or {}).values() if isinstance(datasets, dict) else ():
                for k in ("record", "sidecar"):
                    ref = m.get(k) if isinstance(m, dict) else None
                    if isinstance(ref, dict) and isinstance(ref.get("path"), str):
                        refs.add(ref["path"])
        cache[edir] = refs
    return cache[edir]


def _revision_dir_problem(d: Path, refs: dict[Path, set[str]]) -> str | None:
    """Why an ``rNNNN/`` folder is a problem (None: its entry file exists)."""
    if (d.parent / f"{d.name}.json").exists():
        return None
    users = sorted({r.split("/")[0] for r in referenced(d.parent, refs)} & {d.name})
    if users:
        return (f"revision folder without its entry file {d.name}.json, but newer revisions reference files in "
                f"it: the entry file was deleted; restore {d.name}.json from version control (do not delete "
                "the folder)")
    return (f"revision folder without its entry file {d.name}.json: {LEFTOVER}. No entry references it; it can "
            f"be deleted ({UNLESS_WRITING})")


def _temp_problem(p: Path) -> str:
    if p.name.endswith(f".{atomic.OLD_TAG}"):
        target = p.name[1:].rsplit(".", 2)[0]
        return (f"the previous content of {target}, kept while an interrupted write replaced it: if {target} "
                f"exists, this file can be deleted; if not, rename it back to {target}")
    what = "folder" if p.is_dir() else "file"
    return f"a hidden temporary {what}: {LEFTOVER}; nothing references it and it can be deleted ({UNLESS_WRITING})"


def _orphan_sidecar(p: Path, refs: dict[Path, set[str]]) -> bool:
    """Whether the flags sidecar ``p`` has no record: no ``<name>.json`` beside it, no record beside it naming
    it, and (in a revision folder) no entry referencing it."""
    if (p.parent / (p.name[: -len(SIDECAR_SUFFIX)] + ".json")).exists():
        return False
    for q in p.parent.glob("*.json"):
        side = (_raw_json(q) or {}).get("sidecar") if q.is_file() else None
        if isinstance(side, dict) and side.get("file") == p.name:
            return False
    return not (REV_DIR_RE.match(p.parent.name) and f"{p.parent.name}/{p.name}" in referenced(p.parent.parent, refs))


def leftover(p: Path, refs: dict[Path, set[str]]) -> str | None:
    """Why ``p`` is a leftover of an interrupted write, with what to do (None: it is not one)."""
    if atomic.is_temp_name(p.name):
        return _temp_problem(p)
    if p.name.startswith("."):
        return None
    if p.is_dir():
        return _revision_dir_problem(p, refs) if REV_DIR_RE.match(p.name) else None
    if p.suffix in (".json", ".npz") and p.is_file() and p.stat().st_size == 0:
        return (f"an empty file (0 bytes): {LEFTOVER} or a truncated file; it holds no data and can be deleted "
                "(restore it from version control instead if it was committed)")
    if p.name.endswith(SIDECAR_SUFFIX) and _orphan_sidecar(p, refs):
        return (f"flags sidecar without a record that names it: {LEFTOVER}; nothing references it and it can be "
                f"deleted ({UNLESS_WRITING})")
    return None


# --- the whole check ---------------------------------------------------------------------------------------------
@dataclass
class _Run:
    root: Path
    report: Report = field(default_factory=Report)
    cache: dict[Path, tuple[ResultRecord | None, list[str]]] = field(default_factory=dict)
    refs: dict[Path, set[str]] = field(default_factory=dict)
    newest: dict[Path, int] = field(default_factory=dict)
    local_history: list[Path] = field(default_factory=list)

    def add(self, path: Path, reason: str, level: str = "error", kind: str = "invalid") -> None:
        self.report.problems.append(Problem(path, reason, level, kind))


def _check_revision(run: _Run, p: Path) -> None:
    run.report.checked += 1
    entry, reasons = _check_entry(p, run.cache)
    for reason in reasons:
        run.add(p, reason)
    if entry is None:
        return
    if p.parent not in run.newest:
        run.newest[p.parent] = max(n for n, _ in revision_files(p.parent))
    local = local_path_reasons(entry, p.parent, run.cache)
    if local and entry.revision == run.newest[p.parent]:
        run.add(p, "the newest revision names machine-local paths in its model fields "
                   f"({'; '.join(local)}); results must not depend on one machine's folders: rewrite them as a new "
                   "revision with `zsrbench migrate-paths`")
    elif local:
        run.local_history.append(p)


def _check_file(run: _Run, p: Path) -> None:
    if p.suffix != ".json" or p.name.endswith(".schema.json") or p.name.startswith("."):
        return
    if REV_FILE_RE.match(p.name):
        _check_revision(run, p)
        return
    if REV_DIR_RE.match(p.parent.name) and (p.parent.parent / f"{p.parent.name}.json").exists():
        return  # a record copied into an entry's revision: checked through that entry
    run.report.checked += 1
    shift = _attention_shift_reasons(p)
    if shift is not None:
        for reason in shift:
            run.add(p, reason)
        return
    key = p.resolve()
    if key not in run.cache:
        run.cache[key] = check_record(p)
    for reason in run.cache[key][1]:
        run.add(p, reason)


def _attention_shift_reasons(p: Path) -> list[str] | None:
    """The problems of an attention-shift record (written by `zsrbench attention`); None when ``p`` is not one."""
    data = _raw_json(p)
    if not (isinstance(data, dict) and data.get("kind") == "attention_shift"):
        return None
    from zsrbench.leaderboard.shift_record import check_shift_file

    return check_shift_file(p)


def _local_history_summary(run: _Run) -> None:
    if not run.local_history:
        return
    root = run.root
    where = sorted({str(q.parent.relative_to(root)) if q.is_relative_to(root) else str(q.parent)
                    for q in run.local_history})
    run.add(root, f"{len(run.local_history)} older revision(s) of {len(where)} entr"
                  f"{'y' if len(where) == 1 else 'ies'} name machine-local paths in their model fields; they are "
                  "history (kept as written) and their entries' newest revisions are clean", "warning")


def validate_path(path: str | Path) -> Report:
    """Validate a leaderboard, a results directory or one file; problems name each bad file and why.

    Symlinked folders are followed (as ``zsrbench table`` follows them); leftovers of interrupted writes (hidden
    temporary files and folders, revision folders without their entry file, sidecars without a record, empty
    files) are problems too, each saying whether it can be deleted.
    """
    root = Path(path)
    if not atomic.probe(root, option="the PATH argument", what="path"):
        raise ZsrError(f"{root} does not exist. Pass a leaderboard, a results directory or one file "
                       "(`zsrbench validate leaderboards`).")
    run = _Run(root)
    for p in [root] if root.is_file() else walk(root, run.report):
        if ".units" in p.parts[len(root.parts):-1] or p.name.endswith(".units"):
            if p.name.endswith(".units"):  # an evaluation stopped before all of its units were done
                record = p.with_name(p.name.removesuffix(".units") + ".json")
                if record.is_file():  # stopped between writing the record and removing its units
                    run.add(p, f"leftover work units of an evaluation whose record {record.name} is complete; the same "
                            "`zsrbench run` command with --resume removes them (or delete the folder)", level="warning")
                else:
                    run.add(p, "the finished work units of an evaluation that was stopped before its end; run the "
                            "same `zsrbench run` command with --resume to complete it (or delete the folder)",
                            level="warning")
            continue
        why = leftover(p, run.refs)
        if why is not None:
            run.report.checked += 1
            run.add(p, why, kind="leftover")
        elif not p.is_dir():
            _check_file(run, p)
    _local_history_summary(run)
    return run.report
