"""What the site shows, gathered once: the leaderboard's entries, its tables (built by
:func:`zsrbench.leaderboard.tables.build_tables`, exactly as ``zsrbench table`` builds them), the result
records behind measured entries, and the facts that name each model. Nothing here computes a number."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from zsrbench.errors import ZsrError
from zsrbench.leaderboard import combine, ranking, records, table_model, tables
from zsrbench.leaderboard.reading import LoadedEntry, StoreView
from zsrbench.leaderboard.schema import LeaderboardEntry, ResultRecord
from zsrbench.site import naming
from zsrbench.site.naming import ModelFacts, PageKey, model_labels, weights_name

EntryKey = tuple[str, str]  # protocol name, entry slug


@dataclass
class PageGroups:
    """The tables of one protocol page: the ranking group (None without measured entries) and the suites'."""

    key: PageKey
    ranking: table_model.Group | None = None
    suites: list[table_model.Group] = field(default_factory=list)

    @property
    def groups(self) -> list[table_model.Group]:
        return ([self.ranking] if self.ranking else []) + self.suites

    @property
    def proxy(self) -> str | None:
        """What the protocol is when it is not evidence about methods (``Group.proxy``), None otherwise."""
        return next((p for g in self.groups if (p := getattr(g, "proxy", None))), None)

    @property
    def title(self) -> str:
        return naming.page_title(self.key, self.proxy)

    @property
    def dataset_notes(self) -> dict[str, str]:
        """Per dataset, why its column says little about the models (``Group.dataset_notes``), from every table of
        the page (the first table that notes a dataset wins)."""
        notes: dict[str, str] = {}
        for g in self.groups:
            for ds, text in (getattr(g, "dataset_notes", None) or {}).items():
                notes.setdefault(ds, text)
        return notes


@dataclass
class SiteData:
    title: str
    view: StoreView
    tables: table_model.TableSet
    pages: dict[PageKey, PageGroups]
    entries: dict[EntryKey, LoadedEntry]  # every entry shown, audits included
    records: dict[EntryKey, dict[str, ResultRecord | ZsrError]]  # measured entries: dataset -> record
    facts: dict[str, ModelFacts]  # measured model id -> what names it
    labels: dict[str, str]  # measured model id -> its label across the whole site
    audits: dict[ranking.AuditKey, LoadedEntry]  # the audit entry each ranking row's status comes from
    suite_rows: dict[EntryKey, table_model.Row]  # each entry's row in its own suite's table (its averages)
    warnings: list[str] = field(default_factory=list)

    def entry_of(self, protocol: str, slug: str) -> LoadedEntry | None:
        return self.entries.get((protocol, slug))

    def model_entries(self, model_id: str) -> list[LoadedEntry]:
        return [le for le in self.entries.values() if le.entry.kind != "reported" and le.entry.model.id == model_id]

    def newest_record(self, model_id: str) -> ResultRecord | None:
        recs = [r for le in self.model_entries(model_id) for r in self.records.get(key(le), {}).values()
                if isinstance(r, ResultRecord)]
        return max(recs, key=lambda r: r.created_at) if recs else None

    def audit_for(self, protocol: str, version: int, model_id: str, eps_text: str | None) -> LoadedEntry | None:
        return self.audits.get((protocol, version, model_id, eps_text))

    def page_title(self, k: PageKey) -> str:
        """The title of page ``k``, saying so when its protocol is a proxy."""
        pg = self.pages.get(k)
        return pg.title if pg is not None else naming.page_title(k)

    def row_model(self, g: table_model.Group, r: table_model.Row) -> str | None:
        """The model a measured row is of (``Row.model_id``, else its entry's model); None for reported rows."""
        if r.kind != "measured":
            return None
        mid = getattr(r, "model_id", None)
        if mid:
            return mid
        refs = [r.entry] + [ref.rsplit("@", 1)[0] for ref in r.entries]
        le = next((x for ref in refs if (x := self.entry_of(g.protocol, ref)) is not None), None)
        return le.entry.model.id if le is not None else None


def key(le: LoadedEntry) -> EntryKey:
    return (le.entry.protocol.name, le.entry.entry)


def page_key(g: table_model.Group) -> PageKey:
    return (g.protocol, g.version, g.eps_text, g.subset, getattr(g, "variant", None))


def entry_page_key(e: LeaderboardEntry) -> PageKey:
    """The page an entry's rows are on."""
    p = e.protocol
    return (p.name, p.version, e.eps_text, p.subset, getattr(p, "variant", None))


def read_records(le: LoadedEntry) -> dict[str, ResultRecord | ZsrError]:
    """The result records behind a measured entry, by dataset (an unreadable one as its error)."""
    out: dict[str, ResultRecord | ZsrError] = {}
    if le.entry.measured is None:
        return out
    for ds, m in le.entry.measured.datasets.items():
        try:
            out[ds] = records.read_record(Path(le.base) / m.record.path)
        except ZsrError as exc:
            out[ds] = exc
    return out


def _facts(model_id: str, members: Sequence[LoadedEntry], recs: list[ResultRecord]) -> ModelFacts:
    e = members[0].entry
    newest = max(recs, key=lambda r: r.created_at) if recs else None
    under = sorted({(m.entry.protocol.name, m.entry.protocol.version) for m in members})
    return ModelFacts(
        model_id=model_id, defense=e.model.defense, architecture=e.model.architecture,
        weights=weights_name(newest.model.pretrained, newest.model.checkpoint) if newest else None,
        measured_under=", ".join(f"{n} v{v}" for n, v in under) or None,
        first_seen=min((m.entry.created_at for m in members), default=""))


def collect(view: StoreView, title: str) -> SiteData:
    """Tables, records and model names of everything in ``view`` (all protocol versions, each on its own pages)."""
    audits = [le for le in view.entries if le.entry.kind == "audit"]
    shown = [le for le in view.entries if le.entry.kind != "audit"]
    cache = combine.FlagsCache()
    ts = tables.build_tables(shown, audits=audits, ranking=True, cache=cache)
    pages: dict[PageKey, PageGroups] = {}
    suite_rows: dict[EntryKey, table_model.Row] = {}
    for g in ts.groups:
        pg = pages.setdefault(page_key(g), PageGroups(page_key(g)))
        if g.is_ranking:
            pg.ranking = g
            continue
        pg.suites.append(g)
        for r in g.rows:
            suite_rows.setdefault((g.protocol, r.entry), r)
    entries = {key(le): le for le in view.entries}
    recs = {key(le): read_records(le) for le in shown if le.entry.kind == "measured"}
    by_model: dict[str, list[LoadedEntry]] = {}
    for le in shown:
        if le.entry.kind == "measured":
            by_model.setdefault(le.entry.model.id, []).append(le)
    facts = {mid: _facts(mid, members, [r for m in members for r in recs[key(m)].values()
                                         if isinstance(r, ResultRecord)])
             for mid, members in by_model.items()}
    index = ranking.audit_index(audits)
    audit_entries = {k: le for le in audits for k, e in index.items() if le.entry is e}
    warnings = [f"{path}: {reason} — not shown (run `zsrbench validate`)" for path, reason in view.problems]
    warnings += list(getattr(view, "notes", []) or []) + ts.warnings
    unreadable = [f"{p}/{s}, {ds}: {r}" for (p, s), by_ds in recs.items() for ds, r in by_ds.items()
                  if isinstance(r, ZsrError)]
    warnings += [f"result record unreadable: {u}" for u in unreadable]
    return SiteData(title=title, view=view, tables=ts, pages=pages, entries=entries, records=recs, facts=facts,
                    labels=model_labels(list(facts.values())), audits=audit_entries, suite_rows=suite_rows,
                    warnings=list(dict.fromkeys(warnings)))
