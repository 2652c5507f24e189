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

The checks of one record are :mod:`zsrbench.leaderboard.validate_records`, of one entry revision
:mod:`zsrbench.leaderboard.validate_entries`, of leftovers :mod:`zsrbench.leaderboard.leftovers`; machine-local
paths are recognised by :mod:`zsrbench.leaderboard.machine_local`. This module walks the folder and gathers the
:class:`Report`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zsrbench.errors import ZsrError
from zsrbench.leaderboard import atomic
from zsrbench.leaderboard.entries import REV_DIR_RE, REV_FILE_RE, revision_files
from zsrbench.leaderboard.leftovers import leftover
from zsrbench.leaderboard.schema import ResultRecord
from zsrbench.leaderboard.validate_entries import checked_entry, local_path_reasons
from zsrbench.leaderboard.validate_records import check_record, raw_json


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
    entry, reasons = checked_entry(p, run.cache)
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
    data = raw_json(p)
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
