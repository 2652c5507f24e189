"""Which entries a plot draws: the measured and audit entries of a leaderboard or a raw results folder
(:func:`load_board`), narrowed to one protocol version, sample set, suite and the asked-for models
(:func:`choose`) or named one by one (:func:`match_entries`), each with its status in the tables
(:func:`standings`)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from zsrbench.errors import ZsrError
from zsrbench.figures.plots.names import RANKED
from zsrbench.leaderboard.labels import protocol_proxy
from zsrbench.leaderboard.reading import LoadedEntry


@dataclass(frozen=True)
class Selection:
    """Which measured entries a plot uses (None: the default described at each field)."""

    protocol: str = "micro"
    version: str = "latest"  # latest | a number
    subset: str | None = None  # a named subset, "full" (the full sets); None: full if measured, else the only one
    attack: str | None = None  # the suite; None: the only one, else the protocol's first required suite
    models: tuple[str, ...] = ()  # parts of model ids or defense names; empty: every model


@dataclass
class Chosen:
    entries: list[LoadedEntry]
    suite: str
    subset: str | None
    version: int
    warnings: list[str] = field(default_factory=list)
    # entry slug -> its status in the tables ("ranked", or why not); empty: not known (no marks drawn)
    standing: dict[str, str] = field(default_factory=dict)
    proxy: str | None = None  # what the protocol is when it is not evidence about methods


@dataclass
class Board:
    """What a plot reads: the measured entries, the audit entries their ranking rests on, and warnings."""

    entries: list[LoadedEntry]
    audits: list[LoadedEntry]
    warnings: list[str]


def load_board(*, results_dir: str | Path | None = None, leaderboard_dir: str | Path | None = None,
               protocol: str | None = None) -> Board:
    """The measured and audit entries of a leaderboard (newest revisions; None: the default folder,
    :func:`zsrbench.paths.leaderboard_dir`) or of a raw results folder (no audits), and warnings about files that
    could not be read (skipped, nothing changed)."""
    from zsrbench.leaderboard.board import load_leaderboard
    from zsrbench.leaderboard.reading import entries_from_results

    if results_dir is not None and leaderboard_dir is not None:
        raise ZsrError("Pass either --results-dir or --leaderboard-dir, not both.")
    view = (entries_from_results(results_dir, protocol) if results_dir is not None
            else load_leaderboard(leaderboard_dir, protocol, reported=False))
    warnings = [f"{p}: {why} — not plotted; run `zsrbench validate` (nothing was changed)" for p, why in view.problems]
    measured = [le for le in view.entries if le.entry.kind == "measured" and le.entry.measured is not None]
    return Board(measured, [le for le in view.entries if le.entry.kind == "audit"], warnings)


def load_entries(*, results_dir: str | Path | None = None, leaderboard_dir: str | Path | None = None,
                 protocol: str | None = None) -> tuple[list[LoadedEntry], list[str]]:
    """The measured entries of :func:`load_board` and its warnings."""
    board = load_board(results_dir=results_dir, leaderboard_dir=leaderboard_dir, protocol=protocol)
    return board.entries, board.warnings


def standings(entries: Sequence[LoadedEntry], audits: Sequence[LoadedEntry]) -> dict[str, str]:
    """Each measured entry's status in its suite's table, as ``zsrbench table`` ranks them (``ranked``, or why
    not), by entry slug. ``entries`` should hold every suite of the models (a ranking is their worst case)."""
    from zsrbench.leaderboard import tables

    ts = tables.build_tables(list(entries), audits=list(audits), ranking=False)
    return {r.entry: r.status or RANKED for g in ts.groups for r in g.rows if r.kind == "measured"}


def bars_standing(board: Board, chosen: Sequence[LoadedEntry]) -> dict[str, str]:
    """The status of each of ``chosen``, ranked against every suite of its model under its protocol version."""
    versions = {(le.entry.protocol.name, le.entry.protocol.version) for le in chosen}
    models = {le.entry.model.id for le in chosen}
    evidence = [le for le in board.entries if le.entry.model.id in models
                and (le.entry.protocol.name, le.entry.protocol.version) in versions]
    return standings(evidence, board.audits)


def choose(entries: Sequence[LoadedEntry], sel: Selection, *, where: str = "the leaderboard",
           audits: Sequence[LoadedEntry] | None = None) -> Chosen:
    """Narrow ``entries`` to one protocol version, one sample set, one suite and the asked-for models. With
    ``audits`` (the board's audit entries; empty for raw results), each chosen entry's status is looked up."""
    from zsrbench.leaderboard.combine import suite_order
    from zsrbench.registry import PROTOCOLS, load_builtins

    load_builtins()
    mine = [le for le in entries if le.entry.protocol.name == sel.protocol]
    if not mine:
        PROTOCOLS.get(sel.protocol)  # a typo is an unknown protocol, not an empty plot
        raise ZsrError(f"{where} has no measured entry of protocol '{sel.protocol}'. Measure some with "
                       f"`zsrbench run --protocol {sel.protocol}`, or point at other results with --results-dir or "
                       "--leaderboard-dir.")
    versions = sorted({le.entry.protocol.version for le in mine})
    if sel.version == "latest":
        version = versions[-1]
    else:
        text = str(sel.version).lower().removeprefix("v")
        if not text.isdigit() or int(text) not in versions:
            raise ZsrError(f"--protocol-version {sel.version}: {where} has {sel.protocol} entries of version(s) "
                           f"{', '.join(map(str, versions))}; pass one of them or latest.")
        version = int(text)
    mine = [le for le in mine if le.entry.protocol.version == version]
    evidence = list(mine)  # every suite of the version: the ranking is the worst case over them
    subsets = sorted({le.entry.protocol.subset or "full" for le in mine})
    subset = sel.subset or ("full" if "full" in subsets else subsets[0] if len(subsets) == 1 else None)
    if subset is None or subset not in subsets:
        raise ZsrError(f"{where} has {sel.protocol} v{version} entries of the sample sets {', '.join(subsets)}"
                       + (f", not '{sel.subset}'" if sel.subset else "") + "; choose one with --subset (full: the full "
                       "test sets). Numbers of different sample sets are never plotted together.")
    mine = [le for le in mine if (le.entry.protocol.subset or "full") == subset]
    standard = [le for le in mine if le.entry.kind != "measured" or le.entry.protocol.variant is None]
    if not any(le.entry.kind == "measured" for le in standard) and any(le.entry.kind == "measured" for le in mine):
        raise ZsrError(f"{where} has only experiments (variants: "
                       f"{', '.join(sorted({str(le.entry.protocol.variant) for le in mine}))}) of {sel.protocol} "
                       f"v{version} ({subset}); plots show the protocol's standard evaluation: run it with the "
                       "protocol's default settings.")
    mine = standard  # an experiment (other settings) is never drawn beside the standard evaluation
    suites = sorted({le.entry.suite for le in mine}, key=suite_order)
    required = PROTOCOLS.get(sel.protocol).required_suites if sel.protocol in PROTOCOLS else ()
    suite = sel.attack or (suites[0] if len(suites) == 1 else next((s for s in required if s in suites), None))
    if suite is None or suite not in suites:
        raise ZsrError(f"{where} has {sel.protocol} v{version} ({subset}) entries of the suites {', '.join(suites)}"
                       + (f", not '{sel.attack}'" if sel.attack else "") + "; choose one with --attack.")
    mine = [le for le in mine if le.entry.suite == suite]
    if sel.models:
        wanted = [w.lower() for w in sel.models]
        mine = [le for le in mine if any(w in le.entry.model.id.lower() or w == (le.entry.model.defense or "").lower()
                                         for w in wanted)]
        if not mine:
            raise ZsrError(f"No {sel.protocol} v{version} {suite} entry is of a model matching --models "
                           f"{','.join(sel.models)}; `zsrbench table --protocol {sel.protocol}` lists the models.")
    chosen = Chosen(mine, suite, None if subset == "full" else subset, version, proxy=protocol_proxy(sel.protocol))
    if audits is not None:
        models = {le.entry.model.id for le in mine}
        chosen.standing = standings([le for le in evidence if le.entry.model.id in models], audits)
    return chosen


def match_entries(entries: Sequence[LoadedEntry], names: Sequence[str], *, where: str = "the leaderboard"
                  ) -> list[LoadedEntry]:
    """The entries named by ``names``: a slug, ``protocol/slug`` or a part of a slug that names one entry."""
    if not names:
        raise ZsrError("Name at least one entry to plot (its name as `zsrbench table` shows it, or a unique part).")
    out = []
    keys = {f"{le.entry.protocol.name}/{le.entry.entry}": le for le in entries}
    for name in names:
        exact = [le for k, le in keys.items() if name in (k, le.entry.entry)]
        hits = exact or [le for k, le in keys.items() if name.lower() in k.lower()]
        if len(hits) == 1:
            out.append(hits[0])
            continue
        if not hits:
            close = difflib.get_close_matches(name, [le.entry.entry for le in entries], n=3, cutoff=0.4)
            hint = f" Did you mean {', '.join(close)}?" if close else " `zsrbench table` lists the entries."
            raise ZsrError(f"No measured entry of {where} matches '{name}'.{hint}")
        listed = ", ".join(f"{le.entry.protocol.name}/{le.entry.entry}" for le in hits[:8])
        raise ZsrError(f"'{name}' matches {len(hits)} entries ({listed}{' …' if len(hits) > 8 else ''}); be more "
                       "specific.")
    return out
