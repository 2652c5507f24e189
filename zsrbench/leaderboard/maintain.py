"""Maintenance of a committed leaderboard, always as new revisions (history is kept, nothing is edited).

:func:`migrate_paths` (``zsrbench migrate-paths``): measured entries written before records named their model
without machine-local paths (``local-dir:/root/.cache/zsrbench/…`` as the architecture, an absolute checkpoint
folder) get a new revision whose model fields, and those of sanitised copies of its records, use portable names:

* a folder in a zsrbench cache becomes ``cache:<path relative to the cache>`` (recognised by the cache roots
  given, by this machine's cache locations (:func:`zsrbench.paths.cache_roots`: ``$ZSRBENCH_CACHE``,
  ``$XDG_CACHE_HOME/zsrbench``, ``~/.cache/zsrbench``), by the default cache location ``…/.cache/zsrbench/``
  of any machine, by the cache's own layout under another machine's ``$XDG_CACHE_HOME``
  (``…/zsrbench/checkpoints/models--…``, ``…/zsrbench/pretrained/<name>``), or by the on-demand training layout
  ``…/defenses/<protocol>-v<N>/<defense>-s<seed>-<key>``);
* any other absolute path becomes its file or folder name (the sha256 beside it identifies the file);
* ``local-dir:<trained folder>`` as the architecture becomes the architecture the folder was trained from, which
  the model id (``<defense>/<architecture>/<tag>``) already names.

The per-sample flags are copied unchanged, every number stays as it was, and the model id is kept (it names the
weights file's sha256; the tensor digest that new ids use needs the weights, which the leaderboard does not hold).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Sequence

import zsrbench
from zsrbench import jsonio, paths
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.entries import entry_dirs, measurement, now_utc, rev_name, sha256_hex
from zsrbench.leaderboard.machine_local import _LOCAL_IN_TEXT, is_machine_local, local_paths
from zsrbench.leaderboard.reading import _previous
from zsrbench.leaderboard.records import parse_record
from zsrbench.leaderboard.schema import DatasetMeasurement, FileRef, LeaderboardEntry
from zsrbench.leaderboard.store import _taken_numbers, _write_revision, locked

# the default cache (zsrbench.paths.cache_dir without $ZSRBENCH_CACHE or $XDG_CACHE_HOME) in other machines' paths
_DEFAULT_CACHE = re.compile(r"(?:^|/)\.cache/zsrbench/(.+)$")
# a cache under another machine's $XDG_CACHE_HOME (<xdg>/zsrbench/…): recognised by the cache's own layout below it
# (checkpoints downloaded by the catalogue, models pretrained by `zsrbench pretrain`)
_XDG_CACHE = re.compile(r"(?:^|/)zsrbench/((?:checkpoints/models--[^/]+|pretrained/[^/]+)(?:/.*)?)$")
# a folder fine-tuned on demand (zsrbench.training.on_demand.on_demand_dir) in any cache
_ON_DEMAND = re.compile(r"(?:^|/)(defenses/[^/]+-v\d+/[^/]+-s\d+-[0-9a-f]{12})/*$")
MODEL_PATH_FIELDS = ("checkpoint", "pretrained")


def _cache_roots(extra: Sequence[str | Path]) -> list[str]:
    """The roots given, then this machine's cache locations (:func:`zsrbench.paths.cache_roots`), the longest
    first (a cache folder inside another one is matched as itself)."""
    given = list(dict.fromkeys(str(r).rstrip("/\\") for r in extra if str(r).strip()))
    local = {str(r).rstrip("/\\") for r in paths.cache_roots()} - set(given)
    return given + sorted(local, key=lambda r: (-len(r), r))


def portable_name(path: str, cache_roots: Sequence[str | Path] = ()) -> str:
    """A portable name for a path recorded on another machine: ``cache:<relative>`` for a zsrbench cache folder,
    else the file or folder name; a value that is not a machine-local path is returned unchanged."""
    text = path.strip()
    if not is_machine_local(text):
        return path
    posix = text.replace("\\", "/")
    for root in _cache_roots(cache_roots):
        r = root.replace("\\", "/")
        if posix.startswith(r + "/"):
            return "cache:" + posix[len(r) + 1:].strip("/")
    for pattern in (_DEFAULT_CACHE, _XDG_CACHE, _ON_DEMAND):
        m = pattern.search(posix)
        if m:
            return "cache:" + m.group(1).strip("/")
    name = (PureWindowsPath(text) if re.match(r"^[A-Za-z]:[\\/]", text) else PurePosixPath(posix.rstrip("/"))).name
    return name or path


def portable_architecture(architecture: str, model_id: str, cache_roots: Sequence[str | Path] = ()) -> str:
    """``local-dir:<folder>`` → the architecture the model id names (the folder's base architecture), or
    ``local-dir:<portable name>`` when the id names the folder itself."""
    if not architecture.startswith("local-dir:") or not is_machine_local(architecture):
        return architecture
    folder = architecture.split(":", 1)[1]
    parts = model_id.split("/")
    base = parts[1] if len(parts) == 3 else None
    if base and base != PurePosixPath(folder.replace("\\", "/").rstrip("/")).name:
        return base
    return "local-dir:" + portable_name(folder, cache_roots)


def _replace_in_text(text: str, cache_roots: Sequence[str | Path]) -> str:
    return _LOCAL_IN_TEXT.sub(lambda m: m.group(0).replace(m.group(1), portable_name(m.group(1), cache_roots)), text)


def sanitise_model(model: dict[str, Any], model_id: str, cache_roots: Sequence[str | Path] = ()
                   ) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """A copy of a record's (or an entry's) ``model`` fields without machine-local paths, and what changed as
    ``(field, old, new)``; the id is never changed."""
    out = json.loads(json.dumps(model))
    changed: list[tuple[str, str, str]] = []

    def put(where: str, old: str, new: str) -> str:
        if new != old:
            changed.append((where, old, new))
        return new

    if isinstance(out.get("architecture"), str):
        out["architecture"] = put("architecture", out["architecture"],
                                  portable_architecture(out["architecture"], model_id, cache_roots))
    for f in MODEL_PATH_FIELDS:
        if isinstance(out.get(f), str):
            out[f] = put(f, out[f], portable_name(out[f], cache_roots))
    if isinstance(out.get("hparams"), dict):
        for k, v in out["hparams"].items():
            if isinstance(v, str):
                out["hparams"][k] = put(f"hparams.{k}", v, portable_name(v, cache_roots))
    for f in ("notes",):
        if isinstance(out.get(f), list):
            out[f] = [put(f"{f}[{i}]", v, _replace_in_text(v, cache_roots)) if isinstance(v, str) else v
                      for i, v in enumerate(out[f])]
    if isinstance(out.get("description"), str):
        out["description"] = put("description", out["description"], _replace_in_text(out["description"], cache_roots))
    return out, changed


@dataclass
class PathMigration:
    """One entry whose newest revision named machine-local paths, and the revision that replaces them."""

    entry_dir: Path
    revision: Path | None  # the new revision file (None: a dry run, or the entry could not be migrated)
    changes: list[str] = field(default_factory=list)
    problem: str | None = None  # why the entry was left alone


def _read_checked(base: Path, ref: FileRef, what: str) -> bytes:
    pp = PurePosixPath(ref.path)
    if pp.is_absolute() or ".." in pp.parts:
        raise ZsrError(f"{base}: {what} reference {ref.path!r} leaves the entry directory.")
    path = base.joinpath(*pp.parts)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ZsrError(f"{path}: {what} missing ({exc.strerror or exc}).") from exc
    if sha256_hex(blob) != ref.sha256:
        raise ZsrError(f"{path}: sha256 differs from the one the entry names; run `zsrbench validate`.")
    return blob


def _summary(changed: list[tuple[str, str, str]]) -> list[str]:
    seen: dict[tuple[str, str, str], None] = {}
    for c in changed:
        seen.setdefault(c, None)
    return [f"{f}: {old!r} -> {new!r}" for f, old, new in seen]


def migrate_paths(leaderboard_root: str | Path, *, dry_run: bool = False, now: str | None = None,
                  cache_roots: Sequence[str | Path] = ()) -> list[PathMigration]:
    """Give every measured entry whose newest revision names machine-local paths a new revision without them.

    The new revision references the previous one, says in ``changes`` what was rewritten, holds sanitised copies
    of every record it references (only model fields differ; the entry names the new files' sha256) next to
    unchanged copies of their flags. Entries already clean (and reported or audit entries) are left alone, so a
    second run does nothing. ``dry_run`` computes the changes without writing.
    """
    root = Path(leaderboard_root)
    if not root.is_dir():
        raise ZsrError(f"No leaderboard at {root}; pass the leaderboard directory (e.g. leaderboards).")
    out: list[PathMigration] = []
    for edir in entry_dirs(root):
        with locked(edir):
            prev = _previous(edir)
            pe = prev.entry
            if pe is None or pe.kind != "measured" or pe.measured is None:
                continue
            if prev.note is not None:
                out.append(PathMigration(edir, None, problem=f"{prev.note}; fix it first (`zsrbench validate`)"))
                continue
            try:
                migration = _migrate_entry(edir, pe, prev, dry_run=dry_run, now=now, cache_roots=cache_roots)
            except ZsrError as exc:
                out.append(PathMigration(edir, None, problem=str(exc)))
                continue
            if migration is not None:
                out.append(migration)
    return out


def _migrate_entry(edir: Path, pe: LeaderboardEntry, prev: Any, *, dry_run: bool, now: str | None,
                   cache_roots: Sequence[str | Path]) -> PathMigration | None:
    assert pe.measured is not None
    entry_model, entry_changed = sanitise_model(pe.model.model_dump(mode="json"), pe.model.id, cache_roots)
    n = max(_taken_numbers(edir), default=0) + 1
    rev = rev_name(n)
    files: dict[str, bytes] = {}
    datasets: dict[str, DatasetMeasurement] = {}
    record_changed: list[tuple[str, str, str]] = []
    recomputed: list[str] = []
    for ds, m in pe.measured.datasets.items():
        blob = _read_checked(edir, m.record, f"record of {ds}")
        side = _read_checked(edir, m.sidecar, f"flags of {ds}")
        data = jsonio.parse(blob, edir / m.record.path, "result record")
        model, changed = sanitise_model(data.get("model") or {}, str((data.get("model") or {}).get("id", "")),
                                        cache_roots)
        record_changed += changed
        data["model"] = model
        new_blob = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
        record = parse_record(json.loads(new_blob), f"{edir / m.record.path} (sanitised)")
        if record.sidecar is None or record.sidecar.file != PurePosixPath(m.sidecar.path).name:
            raise ZsrError(f"{edir / m.record.path}: its flags sidecar is not the one the entry names.")
        name = PurePosixPath(m.record.path).name
        files[name] = new_blob
        files[record.sidecar.file] = side
        dm = measurement(record, FileRef(path=f"{rev}/{name}", sha256=sha256_hex(new_blob)),
                         FileRef(path=f"{rev}/{record.sidecar.file}", sha256=m.sidecar.sha256))
        if dm.model_copy(update={"record": m.record, "sidecar": m.sidecar}) != m:
            recomputed.append(ds)
        datasets[ds] = dm
    if not entry_changed and not record_changed:
        return None
    what = ["machine-local paths in model fields replaced by portable names (zsrbench migrate-paths): folders "
            "in zsrbench's cache as cache:<path>, other paths by their file or folder name"]
    what += [f"model.{line}" for line in _summary(entry_changed)]
    what += [f"records' model.{line}" for line in _summary(record_changed)]
    sources = sorted({str(PurePosixPath(m.record.path).parent) for m in pe.measured.datasets.values()})
    what.append(f"records of {', '.join(datasets)} copied from {', '.join(sources)} into {rev}/ with only these "
                "fields rewritten; per-sample flags copied unchanged; every number as before")
    if recomputed:
        what.append(f"dataset summaries of {', '.join(recomputed)} recomputed from their records by this zsrbench "
                    "version (deviations)")
    what.append(f"model id kept: {pe.model.id!r} names its weights file's sha256; new runs name models by the "
                "canonical digest of their tensors, which cannot be computed here (the weights are not in the "
                "leaderboard), so the id is not re-derived")
    entry = LeaderboardEntry(
        kind="measured", entry=pe.entry, revision=n, created_at=now or now_utc(), previous=prev.ref(), changes=what,
        protocol=pe.protocol, model=pe.model.model_validate(entry_model), suite=pe.suite, eps=pe.eps,
        eps_text=pe.eps_text, zsrbench_version=zsrbench.__version__,
        measured=pe.measured.model_copy(update={"datasets": datasets}))
    entry = LeaderboardEntry.model_validate(entry.model_dump())
    leftover = local_paths(entry.model) + [x for r in files for x in
                                           (local_paths(json.loads(files[r]).get("model") or {})
                                            if r.endswith(".json") else [])]
    if leftover:
        raise ZsrError(f"{edir}: could not find a portable name for {', '.join(f for f, _ in leftover)}; nothing "
                       "was written.")
    if dry_run:
        return PathMigration(edir, None, what)
    return PathMigration(edir, _write_revision(edir, entry, files), what)
