"""Published numbers as *reported* leaderboard entries (never measured ones), each with its source.

Reads the CSVs shipped in the package, ``zsrbench/reported_data/`` (:func:`packaged_csv_dir`, see its README;
another folder can be given), the data set entries name as ``data/reported/<file>``:

* ``tga16_neurips24.csv``: the TGA-ZSR paper's per-dataset tables (method, metric, attack, eps, 16 datasets,
  average, source), protocol ``tga16``;
* ``others.csv``: averages only (method, model, protocol, metric, attack, eps, average, source);
* ``zoo.csv``: the same columns, published rows of the model zoo's models (``zsrbench/models/zoo.json``) that are
  not part of the project's shared data (``data/reported`` holds the two files above; this one ships with the
  package only);
* ``sources.json``: what each source actually did (:func:`source_facts`): the attack it ran, precision, dataset
  set, sample count, whether it re-ran or copied its baselines, and which methods it reports as their authors
  (self-reported; every other method of the source is a third party's evaluation). Tables label reported rows
  with it.

Rows of one method and source are merged: each (attack, ε) becomes one entry holding the robust numbers and the
clean numbers of the same model. Printed averages are kept as printed; the mean of the printed per-dataset
values is stored next to them, so the paper's own inconsistencies stay visible.

Re-importing adds a revision only where the numbers or their description changed. An entry imported earlier
from one of the CSVs that the corrected CSVs no longer produce (e.g. rows moved from ``autoattack`` to
``aa-lite``) gets a new revision with ``reported.withdrawn`` saying why: it stays in the history, tables leave it
out. Importing again is a no-op.

:func:`packaged_entries` builds the same entries in memory, nothing written: ``zsrbench table`` shows them for
a protocol whose leaderboard folder holds no reported entries (:func:`zsrbench.leaderboard.board.load_leaderboard`).
"""

from __future__ import annotations

import csv
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import zsrbench
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.entries import entry_dirs, now_utc, reported_slug
from zsrbench.leaderboard.reading import _previous
from zsrbench.leaderboard.records import slug
from zsrbench.leaderboard.schema import (
    EntryModel, EntryProtocol, LeaderboardEntry, ReportedData, ReportedNumbers,
)
from zsrbench.leaderboard.store import _taken_numbers, _write_revision, add_reported, locked

# the zsrbench attack suite a printed attack name corresponds to (same attack and settings)
SUITE_OF = {"pgd100": "pgd", "cw100": "cw", "none": "none"}
ATTACK_DESCRIPTIONS = {
    "pgd100": "PGD-100, step 1/255",
    "cw100": "CW-margin, κ = 50, 100 steps",
    "aa-lite": "what the TGA-ZSR paper calls AutoAttack: APGD-CE + APGD-DLR (APGD-CE only on PCAM)",
    "autoattack": "AutoAttack (as run by the source)",
    "aa-fare": "AutoAttack as run in the RobustVLM (FARE) evaluation",
}
# a source whose text starts with one of these keys (the rest says where in it, e.g. "(…, Table 16)") has this id
SOURCE_IDS = {
    "Yu, Zhang, Xu. Text-Guided Attention is All You Need for Zero-Shot Robustness in Vision-Language Models. "
    "NeurIPS 2024": "tga-zsr-neurips24",
    "official TGA-ZSR repository README, Comp-TGA row": "tga-zsr-readme",
    "third-party re-evaluation: UCAT, arXiv 2512.12997": "ucat-arxiv2512.12997",
    "RobustVLM README, average zero-shot": "robustvlm-readme",
}
# (source id, attack) -> what that source's attack is, where ATTACK_DESCRIPTIONS' generic text does not fit
SOURCE_ATTACK_DESCRIPTIONS = {
    ("ucat-arxiv2512.12997", "aa-lite"): "what the source calls 'AA': APGD-CE + APGD-DLR (not the standard AutoAttack)",
}
# (source id, attack no longer listed) -> why its entries were withdrawn
WITHDRAWN_REASONS = {
    ("ucat-arxiv2512.12997", "autoattack"): (
        "the source's 'AA' is APGD-CE + APGD-DLR, not the standard AutoAttack: the corrected data/reported/others.csv "
        "lists these numbers under aa-lite"),
}
# (file, method, attack) -> (row label, note): rows that are a different model than the method's other rows
SEPARATE_MODELS = {
    ("tga16_neurips24.csv", "TGA-ZSR", "aa-lite"): (
        "TGA-ZSR (β = 0.009)",
        "a separately trained TGA-ZSR model (β = 0.009), not the model of the paper's other TGA-ZSR rows; "
        "the paper reports no clean accuracy for it",
    ),
}
# (file, method, metric, attack) -> why the printed average differs from the per-dataset mean
KNOWN_INCONSISTENCIES = {
    ("tga16_neurips24.csv", "CLIP", "robust", "cw100"): (
        "known inconsistency in the paper: its per-dataset values average to 2.64, not the printed 3.64"),
    ("tga16_neurips24.csv", "TGA-ZSR", "clean", "none"): (
        "known inconsistency in the paper: the per-dataset values average to 56.38, not the printed 56.44 "
        "(the printed averages are means over runs)"),
}
MODEL_DESCRIPTIONS = {
    "tga16_neurips24.csv": "ViT-B/32 adversarially or cleanly fine-tuned on Tiny-ImageNet (as in the TGA-ZSR paper)",
}
CLIP_DESCRIPTION = "ViT-B/32, OpenAI CLIP without fine-tuning"
PRINTED_TOL = 0.01  # percentage points
FACTS_FILE = "sources.json"  # per-source facts, next to the CSVs (see its README)
NOT_STATED = "not stated"
SELF, THIRD_PARTY = "self-reported", "third-party"
META = {"method", "model", "protocol", "metric", "attack", "eps", "average", "source"}


def source_id(source: str) -> str:
    for key, sid in SOURCE_IDS.items():
        if source == key or source.startswith(key + " "):
            return sid
    return slug(source.lower())[:48].strip("_.-")


@functools.lru_cache(maxsize=1)
def _facts() -> dict:
    return json.loads((packaged_csv_dir() / FACTS_FILE).read_text(encoding="utf-8"))


def source_facts(source_id: str) -> dict | None:
    """The facts ``reported_data/sources.json`` records about one source (None: a source it does not know)."""
    return _facts()["sources"].get(source_id)


def attack_used(source_id: str, attack: str, fallback: str | None = None) -> str:
    """What the source's ``attack`` (a CSV attack key) actually ran: the source's own text, else the generic one."""
    facts = source_facts(source_id) or {}
    return (facts.get("attacks", {}).get(attack) or _facts()["attacks"].get(attack) or fallback or attack)


def role(source_id: str, method: str) -> str | None:
    """``self-reported`` (the source is the method's authors'), ``third-party``, or None (source not recorded)."""
    facts = source_facts(source_id)
    if facts is None:
        return None
    return SELF if method in facts.get("self_reported", []) else THIRD_PARTY


def source_fact(source_id: str, key: str) -> str:
    """One fact (precision, datasets, samples, baselines) of a source; ``not stated`` where none is recorded."""
    return (source_facts(source_id) or {}).get(key) or NOT_STATED


def _num(text: str, where: str) -> float | None:
    t = (text or "").strip()
    if t in ("", "-", "–"):
        return None
    try:
        return float(t)
    except ValueError:
        raise ZsrError(f"{where}: {t!r} is not a number.") from None


def _eps(text: str) -> tuple[float | None, str | None]:
    t = (text or "").strip()
    if t in ("", "-"):
        return None, None
    from zsrbench.eps import normalise_eps

    et = normalise_eps(t)
    assert et is not None
    return float(et.split("/")[0]) / 255.0, et


@dataclass
class _Row:
    file: str
    line: int
    method: str
    model: str | None
    protocol: str
    metric: str
    attack: str
    eps: str
    per_dataset: dict[str, float]
    average: float | None
    source: str
    notes: list[str] = field(default_factory=list)


def read_rows(csv_path: Path, default_protocol: str = "tga16") -> list[_Row]:
    rows = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for i, d in enumerate(csv.DictReader(f), start=2):
            where = f"{csv_path.name}:{i}"
            metric = d["metric"].strip()
            if metric not in ("clean", "robust"):
                raise ZsrError(f"{where}: metric must be clean or robust; got {metric!r}.")
            per = {}
            for k, v in d.items():
                if k in META or k is None:
                    continue
                x = _num(v, f"{where} ({k})")
                if x is not None:
                    per[k.strip()] = x
            rows.append(_Row(file=csv_path.name, line=i, method=d["method"].strip(), model=(d.get("model") or None),
                             protocol=(d.get("protocol") or default_protocol).strip(), metric=metric,
                             attack=d["attack"].strip(), eps=d["eps"].strip(),
                             per_dataset=per, average=_num(d.get("average", ""), f"{where} (average)"),
                             source=d["source"].strip()))
    return rows


def _numbers(row: _Row) -> ReportedNumbers:
    mean = round(sum(row.per_dataset.values()) / len(row.per_dataset), 4) if row.per_dataset else None
    notes = []
    key = (row.file, row.method, row.metric, row.attack)
    if mean is not None and row.average is not None and abs(mean - row.average) > PRINTED_TOL:
        notes.append(KNOWN_INCONSISTENCIES.get(key) or f"the printed average {row.average:.2f} differs from the mean "
                                                      f"of the printed per-dataset values ({mean:.2f})")
    scope = "zero-shot" if "average zero-shot" in row.source.lower() else "all"
    return ReportedNumbers(per_dataset=row.per_dataset, average=row.average, average_scope=scope,
                           per_dataset_mean=mean, notes=notes)


def _protocol(name: str) -> EntryProtocol:
    from zsrbench.protocols import get_protocol

    p = get_protocol(name)
    return EntryProtocol(name=p.name, version=p.version, datasets=list(p.datasets), train_dataset=p.train_dataset,
                         normalised_average=p.normalised_average)


def entries_from_rows(rows: Iterable[_Row]) -> list[LeaderboardEntry]:
    """Reported entry drafts (revision, dates and digests are filled in when they are added to a store)."""
    rows = list(rows)
    clean: dict[tuple[str, str, str | None, str, str], _Row] = {}
    for r in rows:
        if r.metric == "clean":
            k = (r.file, r.method, r.model, r.protocol, r.source)
            if k in clean:
                raise ZsrError(f"{r.file}:{r.line}: a second clean row for {r.method} from the same source.")
            clean[k] = r
    used: set[tuple[str, str, str | None, str, str]] = set()
    drafts = []
    robust_rows = [r for r in rows if r.metric == "robust"]
    for r in robust_rows:
        k = (r.file, r.method, r.model, r.protocol, r.source)
        separate = SEPARATE_MODELS.get((r.file, r.method, r.attack))
        c = None if separate else clean.get(k)
        if c is not None:
            used.add(k)
        drafts.append(_draft(r, c, separate))
    for k, c in clean.items():  # clean numbers without any attack row
        if k not in used and not any((r.file, r.method, r.model, r.protocol, r.source) == k for r in robust_rows):
            drafts.append(_draft(None, c, None))
    return drafts


def _draft(robust: _Row | None, clean: _Row | None, separate: tuple[str, str] | None) -> LeaderboardEntry:
    base = robust or clean
    assert base is not None
    proto = _protocol(base.protocol)
    attack = robust.attack if robust else "none"
    suite = SUITE_OF.get(attack, attack)
    eps, eps_text = _eps(robust.eps) if robust else (None, None)
    sid = source_id(base.source)
    label = separate[0] if separate else base.method
    if base.model:
        description = base.model
    elif base.method == "CLIP":
        description = CLIP_DESCRIPTION
    else:
        description = MODEL_DESCRIPTIONS.get(base.file)
    notes = [separate[1]] if separate else []
    return LeaderboardEntry(
        kind="reported", entry=reported_slug(label, suite, eps_text, sid, proto.version), revision=1,
        created_at="1970-01-01T00:00:00+00:00", protocol=proto,
        model=EntryModel(id=f"reported:{sid}:{label}", name=label, description=description),
        suite=suite, eps=eps, eps_text=eps_text, zsrbench_version=zsrbench.__version__,
        reported=ReportedData(
            source=base.source, source_id=sid, method=base.method, attack=attack,
            attack_description=SOURCE_ATTACK_DESCRIPTIONS.get((sid, attack)) or ATTACK_DESCRIPTIONS.get(attack),
            clean=_numbers(clean) if clean else None,
            robust=_numbers(robust) if robust else None, imported_from=f"data/reported/{base.file}", notes=notes),
    )


def packaged_csv_dir() -> Path:
    """The folder of the reported-number CSVs that ship inside the package (``zsrbench/reported_data``)."""
    return Path(zsrbench.__file__).resolve().parent / "reported_data"


def _csv_files(csv_dir: str | Path | None) -> list[Path]:
    d = packaged_csv_dir() if csv_dir is None else Path(csv_dir)
    files = sorted(d.glob("*.csv"))
    if not files:
        hint = ("the installed zsrbench is incomplete: reinstall it" if csv_dir is None else
                "pass the folder holding tga16_neurips24.csv and others.csv (and zoo.csv), or leave the option out "
                "to use the CSVs shipped with zsrbench")
        raise ZsrError(f"No reported-number CSVs in {d}; {hint}.")
    return files


def reported_entries(csv_dir: str | Path | None = None) -> list[LeaderboardEntry]:
    """Drafts of every reported entry in ``csv_dir`` (``tga16_neurips24.csv``, ``others.csv``, ``zoo.csv``, any
    ``*.csv``; default: the CSVs shipped in the package)."""
    rows: list[_Row] = []
    for f in _csv_files(csv_dir):
        rows += read_rows(f)
    return entries_from_rows(rows)


@functools.lru_cache(maxsize=1)
def _packaged() -> tuple[LeaderboardEntry, ...]:
    return tuple(reported_entries(None))


def packaged_entries(protocol: str | None = None) -> list[LeaderboardEntry]:
    """The reported entries of the shipped CSVs, built in memory (read once per process; nothing is written).

    They are what :func:`import_reported` would write as revision 1 of each entry; ``protocol`` keeps one
    protocol's entries.
    """
    return [e for e in _packaged() if protocol is None or e.protocol.name == protocol]


def import_reported(csv_dir: str | Path | None, leaderboard_root: str | Path, *, now: str | None = None) -> list[Path]:
    """Add the reported entries of ``csv_dir`` (None: the CSVs shipped in the package) to the leaderboard
    (re-importing unchanged numbers adds nothing).

    Returns the newest revision file of every entry the CSVs produce, then the new revisions of entries they no
    longer produce (imported before from one of these files), which are withdrawn (:func:`withdraw_missing`).
    Only the files ``csv_dir`` holds count: importing the project's ``data/reported`` (no ``zoo.csv``) leaves the
    entries imported from the packaged ``zoo.csv`` as they are.
    """
    drafts = reported_entries(csv_dir)
    paths = add_reported(leaderboard_root, drafts, now=now)
    imported = {f"data/reported/{f.name}" for f in _csv_files(csv_dir)}
    return paths + withdraw_missing(leaderboard_root, drafts, imported, now=now)


def withdrawal_reason(old: LeaderboardEntry, drafts: Iterable[LeaderboardEntry]) -> str:
    """Why a reported entry the corrected CSVs no longer produce is withdrawn (naming its replacement if any)."""
    assert old.reported is not None
    r = old.reported
    where = r.imported_from or "the CSVs"
    known = WITHDRAWN_REASONS.get((r.source_id, r.attack))
    moved = sorted({d.suite for d in drafts if d.reported is not None and d.reported.source_id == r.source_id
                    and d.model.name == old.model.name and d.protocol.name == old.protocol.name
                    and d.eps_text == old.eps_text and d.suite != old.suite})
    if known:
        return known
    if moved:
        return (f"{where} no longer lists {old.model.name} under {r.attack!r} from this source; it lists the "
                f"source's numbers under {', '.join(moved)}")
    return f"{where} no longer lists these numbers (the source file was corrected)"


def withdraw_missing(leaderboard_root: str | Path, drafts: Sequence[LeaderboardEntry], imported_from: set[str], *,
                     now: str | None = None) -> list[Path]:
    """Withdraw (as a new revision) every reported entry imported from ``imported_from`` that ``drafts`` no longer
    contain; an entry already withdrawn is left alone. Returns the new revision files."""
    root = Path(leaderboard_root)
    if not root.is_dir():
        return []
    produced = {(d.protocol.name, d.entry) for d in drafts}
    out = []
    for edir in entry_dirs(root):
        if (edir.parent.name, edir.name) in produced or not edir.name.startswith("reported__"):
            continue
        with locked(edir):
            prev = _previous(edir)
            pe = prev.entry
            if pe is None or pe.kind != "reported" or pe.reported is None or prev.note is not None:
                continue
            if pe.reported.imported_from not in imported_from or pe.reported.withdrawn:
                continue
            reason = withdrawal_reason(pe, drafts)
            entry = pe.model_copy(update={
                "revision": max(_taken_numbers(edir), default=0) + 1, "created_at": now or now_utc(),
                "previous": prev.ref(), "changes": [f"withdrawn: {reason}"],
                "reported": pe.reported.model_copy(update={"withdrawn": reason}),
                "zsrbench_version": zsrbench.__version__, "digest": ""})
            entry = LeaderboardEntry.model_validate(entry.model_dump())
            out.append(_write_revision(edir, entry, {}))
    return out
