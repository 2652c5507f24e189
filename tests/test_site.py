"""`zsrbench site`: the static website, built from a small leaderboard and driven in headless Chromium.

The leaderboard: synthetic runs of the protocol's standard evaluation (clip under pgd and cw, tecoa under pgd;
48 images per dataset), one hand-made audit verdict per model on every dataset it measured (the synthetic
protocol has no base model to audit against: clip passes and is ranked, tecoa fails and is unreliable), an
experiment of clip (PGD-2: its own page, ranked nowhere), a published (reported) row with two revisions on the
same page, and the committed tga16 reported entries. A second site is built from the committed micro
leaderboard (a proxy protocol).

The browser tests need /usr/bin/chromium and /usr/bin/chromedriver (Debian's chromium and chromium-driver):
without them they are skipped, unless $CI is set, where they fail. Their screenshots go to
$ZSRBENCH_SCREENSHOT_DIR when set.
"""

from __future__ import annotations

import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from typer.testing import CliRunner

from zsrbench.cli import app
from zsrbench.errors import ZsrError
from zsrbench.leaderboard import store
from zsrbench.leaderboard.audits import add_audit
from zsrbench.leaderboard.schema import (
    AuditCheck, AuditData, EntryModel, LeaderboardEntry, ReportedData, ReportedNumbers,
)
from zsrbench.site import MARKER, build_site

REPO = Path(__file__).resolve().parents[1]
TGA16 = REPO / "leaderboards" / "tga16"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SYNTHETIC_PAGE = "protocols/synthetic-v1-eps1.html"
TGA16_PAGE = "protocols/tga16-v1-eps1.html"
EXPERIMENT_PAGE = "protocols/synthetic-v1-eps1-variant-pgd-steps2.html"
WINDOW = (1280, 900)  # the browser window the layout must fit: audit and status visible without scrolling
FIRST_ROWS = 5  # the rows whose audit and status must be in view
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;'
runner = CliRunner()


# ------------------------------------------------------------------------------------------------ the board
def _audit(le, verdict: str) -> LeaderboardEntry:
    """A hand-made audit with ``verdict`` on every dataset the entry measured (an audit vouches only for the
    datasets it has verdicts for)."""
    e = le.entry
    rows = {d: {"verdict": verdict} for d in e.measured.datasets}
    check = AuditCheck(name="gradient_health", title="gradients (made by the test)", verdict=verdict,
                       summary="hand-made verdict: the synthetic protocol has no base model to audit against",
                       per_dataset=rows)
    return LeaderboardEntry(
        kind="audit", entry=store.measured_slug(e.model.id, "audit", e.eps_text, e.protocol.version), revision=1,
        created_at="2026-01-01T00:00:00+00:00", protocol=e.protocol, model=e.model, suite="audit", eps=e.eps,
        eps_text=e.eps_text, zsrbench_version="0.1.0",
        audit=AuditData(verdict=verdict, failed=["gradient_health"] if verdict == "fail" else [], checks=[check],
                        datasets={d: {"n": m.n_samples} for d, m in e.measured.datasets.items()},
                        dataset_verdicts={d: r["verdict"] for d, r in rows.items()}))


def _reported(proto, name: str, robust: dict, clean: dict, *, source: str, notes=()) -> LeaderboardEntry:
    sid = "test-source-arxiv2401.00001"
    return LeaderboardEntry(
        kind="reported", entry=store.reported_slug(name, "pgd", "1/255", sid, proto.version), revision=1,
        created_at="2026-01-01T00:00:00+00:00", protocol=proto,
        model=EntryModel(id=f"reported:{sid}:{name}", name=name, description=f"{name} as its paper describes it"),
        suite="pgd", eps=1 / 255, eps_text="1/255", zsrbench_version="0.1.0",
        reported=ReportedData(source=source, source_id=sid, method=name, attack="pgd10",
                              attack_description="PGD-10, step 1/255", notes=list(notes),
                              robust=ReportedNumbers(per_dataset=robust), clean=ReportedNumbers(per_dataset=clean)))


def _run(defense: str, res: Path, lb: Path, *extra: str) -> None:
    """A run of the synthetic protocol's standard evaluation (``extra`` settings make it an experiment)."""
    out = runner.invoke(app, ["run", "--protocol", "synthetic", "--defense", defense, *extra,
                              "--results-dir", str(res), "--leaderboard-dir", str(lb), "--quiet"])
    assert out.exit_code == 0, out.output


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("site-board")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZSRBENCH_CACHE", str(tmp / "cache"))
        mp.chdir(tmp)
        lb, res = tmp / "lb", tmp / "res"
        for defense, attack in (("clip", "pgd"), ("clip", "cw"), ("tecoa", "pgd")):  # clip: ranked on two suites
            _run(defense, res, lb, "--attack", attack)
        measured = {le.entry.model.id: le for le in store.load_store(lb).entries}
        for le in measured.values():
            add_audit(lb, _audit(le, "pass" if le.entry.model.defense == "clip" else "fail"))
        _run("clip", res, lb, "--attack", "pgd", "--steps", "2")  # an experiment: its own page, ranked nowhere
        measured = list(measured.values())
        proto = measured[0].entry.protocol
        for robust in (5.0, 12.5):  # two revisions of one published row
            store.add_reported(lb, [_reported(proto, "Published baseline", {d: robust for d in proto.datasets},
                                              {d: 60.0 for d in proto.datasets}, source="A. Author, A baseline, 2024")])
        shutil.copytree(TGA16, lb / "tga16")
    return lb


@pytest.fixture(scope="module")
def site(board: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site-out") / "site"
    result = build_site(out, board)
    assert result.index == out / "index.html" and result.pages > 10
    return out


# ------------------------------------------------------------------------------------------------ parsing
class Tables(HTMLParser):
    """The tables of a page: per table id, its header cells' attributes and its rows (attributes, cell texts,
    cell attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}
        self.links: list[str] = []
        self._table: dict | None = None
        self._row: dict | None = None
        self._cell: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("a", "link", "script", "img"):
            target = a.get("href") or a.get("src")
            if target:
                self.links.append(target)
        if tag == "table" and "id" in a:
            self._table = self.tables.setdefault(a["id"], {"head": [], "rows": [], "attrs": a})
        elif self._table is None:
            return
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and not self._in_head:
            self._row = {"attrs": a, "cells": [], "cell_attrs": []}
        elif tag == "th" and self._in_head:
            self._table["head"].append(a)
        elif tag == "td" and self._row is not None:
            self._row["cell_attrs"].append(a)
            self._cell = []

    def handle_endtag(self, tag):
        if self._table is None:
            return
        if tag == "thead":
            self._in_head = False
        elif tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table["rows"].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Tables:
    p = Tables()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def column(table: dict, key: str) -> int:
    return [h.get("data-key") for h in table["head"]].index(key)


# ------------------------------------------------------------------------------------------------ pages
def test_pages_exist_and_every_link_resolves(site: Path):
    for rel in ("index.html", SYNTHETIC_PAGE, TGA16_PAGE, "assets/site.js", "assets/site.css", MARKER):
        assert (site / rel).is_file(), rel
    pages = sorted(site.rglob("*.html"))
    assert len(list((site / "models").glob("*.html"))) == 2  # clip and tecoa: one card per measured model
    assert len(list((site / "entries").glob("*.html"))) >= 4 + len(list(TGA16.iterdir()))
    for page in pages:
        for target in parse(page).links:
            parts = urlsplit(target)
            if parts.scheme or target.startswith("#"):
                assert parts.scheme in ("http", "https"), (page, target)  # no javascript:, data: or file: links
                continue
            assert (page.parent / unquote(parts.path)).resolve().is_file(), (page.relative_to(site), target)
    text = (site / "index.html").read_text()
    assert SYNTHETIC_PAGE in text and TGA16_PAGE in text  # the index lists protocols and threat models
    top = parse(site / "index.html").tables["top"]
    assert top["rows"], "the index opens on a populated table"
    assert "http" not in (site / "assets" / "site.js").read_text().replace("https://", "")  # nothing fetched


def test_ranking_column_is_the_first_number_column_and_unranked_rows_follow(site: Path):
    lb = parse(site / SYNTHETIC_PAGE).tables["leaderboard"]
    metric = [h for h in lb["head"] if "metric" in h.get("class", "")]
    assert metric[0]["data-key"] == "robust-avg" and "ranking" in metric[0]["class"]
    assert [h["data-key"] for h in metric[:2]] == ["robust-avg", "clean-avg"]
    assert [h["data-key"] for h in metric[-2:]] == ["robust-synthetic_shapes", "robust-synthetic_colors"]
    rows = lb["rows"]
    kinds = [(r["attrs"]["class"], r["cells"][column(lb, "model")]) for r in rows]
    assert kinds[0][0] == "measured ranked" and kinds[0][1].startswith("CLIP · zsr-tiny")
    assert kinds[1][0] == "measured unranked unreliable" and kinds[1][1].startswith("TeCoA · zsr-tiny")
    status = "unreliable: gradient masking (audit failed on synthetic_shapes, synthetic_colors: gradient_health)"
    assert rows[1]["cells"][column(lb, "status")] == status  # the reason in full beside the name …
    assert rows[1]["cell_attrs"][column(lb, "status")]["title"] == status  # … and in the tooltip
    assert rows[0]["cells"][column(lb, "rank")] == "1" and rows[1]["cells"][column(lb, "rank")] == "–"
    assert kinds[2][0] == "reported unranked" and "reported" in kinds[2][1]
    # the ranking cell holds the value, its interval and the bounds; the value sorts, not the text
    cell, attrs = rows[0]["cells"][column(lb, "robust-avg")], rows[0]["cell_attrs"][column(lb, "robust-avg")]
    assert re.fullmatch(r"\d+\.\d\d ±\d+\.\d", cell)
    assert float(attrs["data-v"]) == pytest.approx(float(cell.split()[0]), abs=0.005)
    assert "95% interval" in attrs["title"]
    reported = rows[2]["cells"][column(lb, "robust-avg")]
    assert reported == "12.50"  # the newest revision, as printed, without an interval


def test_models_are_named_by_defense_and_the_card_keeps_the_hash(site: Path):
    page = (site / SYNTHETIC_PAGE).read_text()
    model_ids = re.findall(r"(?:clip|tecoa)/zsr-tiny/[0-9a-f]{12}", page)
    cards = sorted((site / "models").glob("*.html"))
    tecoa = next(c for c in cards if c.name.startswith("tecoa"))
    card = tecoa.read_text()
    mid = re.search(r"tecoa/zsr-tiny/[0-9a-f]{12}", card).group(0)
    lb = parse(site / SYNTHETIC_PAGE).tables["leaderboard"]
    assert all(mid not in r["cells"][column(lb, "model")] for r in lb["rows"])  # the label is not the hash
    assert model_ids, "the hash stays reachable (link titles, filter text)"
    assert "TeCoA · zsr-tiny" in card and mid in card
    assert "https://arxiv.org/abs/2212.07016" in card and "ICLR 2023" in card  # paper link and venue
    assert "Understanding Zero-Shot Adversarial Robustness" in card  # the defense class's citation
    assert "entries/synthetic__tecoa__zsr-tiny__" in card and "#checks" in card  # entries and the audit's checks
    assert "badge fail" in card and "training data" in card and "checkpoint sha256" in card


def test_entry_pages_carry_numbers_provenance_history_and_figures(site: Path):
    entry = next((site / "entries").glob("synthetic__clip__zsr-tiny__*__pgd__eps1__v1.html"))
    text = entry.read_text()
    for part in ("synthetic_shapes", "95% interval", "Provenance", "Git commit", "Record (sha256)", "Revisions",
                 "r0001 (shown)", "zsrbench 0.1.0"):
        assert part in text, part
    fig = re.search(r'<img src="\.\./(figures/[^"]+\.png)"', text)
    if fig:  # drawn by zsrbench.figures.plots.entry_bars
        assert (site / fig.group(1)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "No figure:" in text
    published = next((site / "entries").glob("synthetic__reported__Published_baseline__*.html")).read_text()
    assert "r0002 (shown)" in published and "r0001" in published and "A. Author, A baseline, 2024" in published
    assert 'href="https://arxiv.org/abs/2401.00001"' in published  # the arXiv id in the source id is linked


# ------------------------------------------------------------------------------------------------ ranks and reasons
def lb_tables(page: Path) -> dict[str, dict]:
    """The leaderboard tables of a page (class ``lb``: the page's leaderboard, the index's, every suite's)."""
    return {tid: t for tid, t in parse(page).tables.items() if "lb" in t["attrs"].get("class", "").split()}


def cells(table: dict, row: dict, *keys: str) -> list[str]:
    return [row["cells"][column(table, k)] for k in keys]


def places(card: Path) -> list[dict]:
    """The rows of a model card's "On the leaderboard" table: page, table, rank, robust average, status."""
    table = parse(card).tables.get("places")
    assert table is not None, f"{card.name} lists no places"
    return [dict(zip(("page", "table", "rank", "avg", "status"), r["cells"])) for r in table["rows"]]


def test_unranked_models_have_no_number_on_any_page(site: Path):
    numbered = 0
    for page in sorted(site.rglob("*.html")):
        for tid, t in lb_tables(page).items():
            for r in t["rows"]:
                rank, status = cells(t, r, "rank", "status")
                where = (page.relative_to(site), tid, cells(t, r, "model")[0])
                if rank == "–":
                    assert status != "ranked", where
                    continue
                numbered += 1
                assert rank.isdigit() and r["attrs"]["class"] == "measured ranked" and status == "ranked", where
        if page.parent.name == "models":
            for place in places(page):
                assert (place["rank"] == "–") == (place["status"] != "ranked"), (page.name, place)
    assert numbered, "the ranked model has its number"
    # the unreliable model, the experiment and the published row: a dash and the reason, on every page
    for page in (SYNTHETIC_PAGE, EXPERIMENT_PAGE):
        for tid, t in lb_tables(site / page).items():
            for r in t["rows"]:
                model, rank, status = cells(t, r, "model", "rank", "status")
                if model.startswith("TeCoA") or "reported" in r["attrs"]["class"] or page == EXPERIMENT_PAGE:
                    assert rank == "–" and status != "ranked", (page, tid, model)
                if model.startswith("TeCoA"):
                    assert status.startswith("unreliable: gradient masking"), (page, tid, status)
                if page == EXPERIMENT_PAGE and r["attrs"]["class"].startswith("measured"):
                    assert status.startswith("unranked: experiment"), status
    tecoa = next((site / "entries").glob("synthetic__tecoa__zsr-tiny__*__pgd__eps1__v1.html")).read_text()
    assert "– (no rank) · unreliable: gradient masking" in tecoa  # its entry page says where it stands
    clip = next((site / "entries").glob("synthetic__clip__zsr-tiny__*__pgd__eps1__v1.html")).read_text()
    assert "#1 in the table of suite pgd · ranked" in clip


def test_audit_and_status_stand_beside_the_model_before_the_numbers(site: Path):
    for page in ("index.html", SYNTHETIC_PAGE, TGA16_PAGE, EXPERIMENT_PAGE):
        tabs = lb_tables(site / page)
        assert tabs, page
        for tid, t in tabs.items():
            keys = [h.get("data-key") for h in t["head"]]
            at = keys.index("model")
            assert keys[at + 1:at + 3] == ["audit", "status"], (page, tid, keys)
            first_number = min(i for i, h in enumerate(t["head"]) if "metric" in h.get("class", ""))
            assert first_number == at + 3, (page, tid, keys)


def test_every_model_card_lists_its_places(site: Path):
    cards = {c.name.split("__")[0]: c for c in (site / "models").glob("*.html")}
    assert set(cards) == {"clip", "tecoa"}
    for card in cards.values():
        assert places(card), card.name
    clip = {(p["page"], p["table"]): p for p in places(cards["clip"])}
    title = "synthetic v1 · ε = 1/255"
    ranking = next(p for (page, table), p in clip.items() if page.startswith(title) and table.startswith("ranking"))
    assert ranking["rank"] == "1" and ranking["status"] == "ranked"  # its worst case over pgd and cw
    assert {t for (page, t) in clip if page.startswith(title)} >= {"suite pgd", "suite cw"}
    experiment = [p for (page, _), p in clip.items() if "experiment" in page]
    assert experiment and all(p["rank"] == "–" and p["status"].startswith("unranked: experiment") for p in experiment)
    tecoa = places(cards["tecoa"])
    assert all(p["rank"] == "–" and p["status"].startswith("unreliable: gradient masking") for p in tecoa)


def test_reported_rows_are_never_numbered_and_carry_their_label(site: Path, board: Path):
    from zsrbench.site.build import load_view
    from zsrbench.site.data import collect

    data = collect(load_view(board, "tga16"), "t")
    labels = {r.status for g in data.tables.groups for r in g.rows if r.kind == "reported"}
    assert labels and all(labels)
    shown = set()
    for tid, t in lb_tables(site / TGA16_PAGE).items():
        for r in t["rows"]:
            rank, status = cells(t, r, "rank", "status")
            assert "reported" in r["attrs"]["class"] and rank == "–", (tid, status)
            shown.add(status)
    assert shown == labels  # each published row carries the label the tables give it, in full


def test_dataset_notes_mark_their_columns(board: Path, tmp_path: Path, monkeypatch):
    from zsrbench.site import data

    note = "saturated: noted by the test"
    build_tables = data.tables.build_tables

    def noted(*args, **kwargs):
        ts = build_tables(*args, **kwargs)
        for g in ts.groups:
            g.dataset_notes = {"synthetic_colors": note} if g.protocol == "synthetic" else {}
        return ts

    monkeypatch.setattr(data.tables, "build_tables", noted)
    out = tmp_path / "site"
    build_site(out, board, figures=False)
    for tid, t in lb_tables(out / SYNTHETIC_PAGE).items():
        head = {h.get("data-key"): h for h in t["head"]}
        if "robust-synthetic_colors" not in head:
            continue
        assert note in head["robust-synthetic_colors"]["title"], tid
        assert "◊" not in head["robust-synthetic_shapes"].get("title", ""), tid
    text = (out / SYNTHETIC_PAGE).read_text()
    assert "synthetic_colors (saturated)◊</th>" in text and f"◊ synthetic_colors: {note}" in text


@pytest.fixture(scope="module")
def micro_site(tmp_path_factory) -> Path:
    """The site of the committed micro leaderboard (three protocol versions, audited and unaudited models)."""
    out = tmp_path_factory.mktemp("micro-site") / "site"
    build_site(out, REPO / "leaderboards", protocol="micro", figures=False)
    return out


def test_micro_says_it_is_a_generated_proxy_and_announces_no_leader(micro_site: Path):
    from zsrbench.registry import PROTOCOLS, load_builtins

    load_builtins()
    proxy = PROTOCOLS.get("micro").proxy
    assert proxy and "proxy" in proxy
    index = (micro_site / "index.html").read_text()
    overview = parse(micro_site / "index.html").tables["overview"]
    assert overview["rows"]
    for r in overview["rows"]:
        protocol, leader = r["cells"][0], r["cells"][-1]
        assert protocol.startswith("micro") and "proxy" in protocol
        assert leader.startswith("– none announced") and proxy in leader  # no "Leader: PMG-AFT" on a proxy
    assert f"micro is {proxy}." in index
    pages = sorted((micro_site / "protocols").glob("micro-*.html"))
    assert pages
    for page in pages:
        text = page.read_text()
        title = re.search(r"<title>(.*?)</title>", text).group(1)
        h1 = re.search(r"<h1>(.*?)</h1>", text).group(1)
        assert proxy.replace("'", "&#x27;") in title and proxy.replace("'", "&#x27;") in h1, page.name
        assert f"micro is {proxy}." in text, page.name
    for card in (micro_site / "models").glob("*.html"):
        assert f"micro is {proxy}." in card.read_text(), card.name


def test_every_card_of_the_micro_leaderboard_lists_its_places(micro_site: Path):
    cards = sorted((micro_site / "models").glob("*.html"))
    assert len(cards) >= 18
    for card in cards:
        rows = places(card)
        assert any(p["table"].startswith("ranking") for p in rows), card.name  # a worst case over several suites
        assert all((p["rank"] == "–") == (p["status"] != "ranked") for p in rows), card.name


def test_every_text_from_an_entry_is_escaped(board: Path, tmp_path: Path):
    lb = tmp_path / "lb"
    shutil.copytree(board, lb)
    proto = next(le for le in store.load_store(lb).entries if le.entry.kind == "measured").entry.protocol
    hostile = _reported(proto, HOSTILE, {d: 1.0 for d in proto.datasets}, {d: 2.0 for d in proto.datasets},
                        source=f"{HOSTILE} javascript:alert(1)", notes=[HOSTILE])
    store.add_reported(lb, [hostile])
    out = tmp_path / "site"
    build_site(out, lb, title=f"Board {HOSTILE}", figures=False)
    pages = list(out.rglob("*.html"))
    hostile_pages = [p for p in pages if "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in p.read_text()]
    assert len(hostile_pages) == len(pages)  # the title is on every page, the row on the synthetic page
    for p in pages:
        text = p.read_text()
        assert "<script>alert" not in text and "<img src=x" not in text, p
        assert 'href="javascript:' not in text.lower(), p
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;amp;" in (out / SYNTHETIC_PAGE).read_text()


def test_refuses_a_foreign_folder_and_replaces_its_own(board: Path, tmp_path: Path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ZsrError, match="not made by `zsrbench site`"):
        build_site(foreign, board, figures=False)
    res = runner.invoke(app, ["site", str(foreign), "--leaderboard-dir", str(board), "--no-figures"])
    assert res.exit_code == 2 and "not made by" in res.output and "Traceback" not in res.output
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"] and (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ZsrError, match="overlap"):
        build_site(board / "site", board, figures=False)
    a_file = tmp_path / "file.html"
    a_file.write_text("x")
    with pytest.raises(ZsrError, match="is a file"):
        build_site(a_file, board, figures=False)
    assert a_file.read_text() == "x"
    ours = tmp_path / "ours"
    res = runner.invoke(app, ["site", str(ours), "--leaderboard-dir", str(board), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str((ours / "index.html").resolve()) and (ours / MARKER).is_file()
    (ours / "stale.html").write_text("left over")
    res = runner.invoke(app, ["site", str(ours), "--leaderboard-dir", str(board), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert not (ours / "stale.html").exists() and (ours / "index.html").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    build_site(empty, board, figures=False)
    assert (empty / "index.html").is_file()


def test_unknown_protocol_is_a_clear_error(board: Path, tmp_path: Path):
    res = runner.invoke(app, ["site", str(tmp_path / "s"), "--leaderboard-dir", str(board), "--protocol", "tga61"])
    assert res.exit_code == 2 and "tga61" in res.output and not (tmp_path / "s").exists()


def test_a_published_checkpoint_of_unknown_training_eps_says_so():
    from test_leaderboard import make

    from zsrbench.models import catalogue
    from zsrbench.site.model_cards import training_rows

    rec, _ = make()
    for name, shown in (("qtaft-vit-l-14", "unknown"), ("fare2-clip", "2/255")):
        assert (catalogue.get(name).train_eps is None) == (shown == "unknown")  # zoo.json's train_eps: null or a number
        card = rec.model_copy(update={"model": rec.model.model_copy(update={"checkpoint": name})})
        rows = dict(training_rows(card, card.model.defense))
        assert rows["training ε"] == shown and name in rows["published checkpoint"]



def too_long(tmp_path: Path, kind: str) -> Path:
    """A path the filesystem cannot hold: a 300-character name under an existing folder, or a whole path over
    PATH_MAX (4096 bytes) of short names."""
    return tmp_path / ("x" * 300) / "site" if kind == "name" else tmp_path.joinpath(*["y" * 200] * 25, "site")


@pytest.mark.parametrize("kind", ["name", "path"])
def test_a_site_folder_longer_than_the_filesystem_allows_is_refused(tmp_path: Path, kind: str):
    out = too_long(tmp_path, kind)
    res = runner.invoke(app, ["site", str(out), "--leaderboard-dir", str(tmp_path / "lb"), "--no-figures"])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert isinstance(res.exception, SystemExit) and "too long" in " ".join(res.output.split())
    assert list(tmp_path.iterdir()) == []

# ------------------------------------------------------------------------------------------------ the browser
@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        missing = f"selenium is not installed ({exc})"
    else:
        missing = ", ".join(str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file())
    if missing:
        message = (f"no browser for the site test: {missing} missing (apt-get install chromium chromium-driver; "
                   "pip install selenium)")
        if os.environ.get("CI"):
            pytest.fail(message + " — CI must run this test")
        pytest.skip(message)
    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--allow-file-access-from-files"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.implicitly_wait(2)
    yield driver
    driver.quit()


def _column_values(driver, key: str) -> list[float | None]:
    return driver.execute_script(
        "var th = document.querySelector('#leaderboard th[data-key=\"' + arguments[0] + '\"]');"
        "var i = Array.prototype.indexOf.call(th.parentNode.children, th);"
        "return Array.from(document.querySelectorAll('#leaderboard tbody tr')).map(function (r) {"
        "  var v = r.cells[i].getAttribute('data-v'); return v === null ? null : parseFloat(v); });", key)


def _visible_names(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [r.get_attribute("data-name") for r in driver.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")
            if r.is_displayed()]


def _assert_sorted(values: list[float | None], descending: bool) -> None:
    present = [v for v in values if v is not None]
    assert present and present == sorted(present, reverse=descending), values
    assert values[:len(present)] == present, "rows without a value go last"


def _cell_boxes(driver, keys: tuple[str, ...], rows: int) -> list[dict]:
    """The bounding boxes of the cells under the headers ``keys`` in the first ``rows`` rows of #leaderboard."""
    return driver.execute_script(
        "var keys = arguments[0], n = arguments[1], out = [];"
        "var heads = Array.from(document.querySelectorAll('#leaderboard thead th'));"
        "Array.from(document.querySelectorAll('#leaderboard tbody tr')).slice(0, n).forEach(function (r) {"
        "  keys.forEach(function (k) {"
        "    var i = heads.findIndex(function (h) { return h.getAttribute('data-key') === k; });"
        "    var b = r.cells[i].getBoundingClientRect();"
        "    out.push({key: k, left: b.left, right: b.right, text: r.cells[i].textContent.trim()}); }); });"
        "return out;", list(keys), rows)


def test_audit_and_status_are_in_view_at_1280_px(site: Path, browser, tmp_path: Path):
    for page in (SYNTHETIC_PAGE, TGA16_PAGE):
        browser.get((site / page).as_uri())
        width = browser.execute_script("return window.innerWidth;")
        assert width <= WINDOW[0], width
        boxes = _cell_boxes(browser, ("audit", "status"), FIRST_ROWS)
        assert boxes, page
        for b in boxes:
            assert 0 <= b["left"] and b["right"] <= width, (page, b)
    browser.get((site / SYNTHETIC_PAGE).as_uri())
    statuses = [b["text"] for b in _cell_boxes(browser, ("status",), FIRST_ROWS)]
    assert statuses[0] == "ranked" and statuses[1].startswith("unreliable: gradient masking"), statuses
    shots = Path(os.environ.get("ZSRBENCH_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    for page, name in ((SYNTHETIC_PAGE, "site-synthetic-1280.png"), (TGA16_PAGE, "site-tga16-1280.png")):
        browser.get((site / page).as_uri())
        assert browser.save_screenshot(str(shots / name))
        assert (shots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sort_filter_and_screenshot_in_a_real_browser(site: Path, browser, tmp_path: Path):
    from selenium.webdriver.common.by import By

    browser.get((site / "index.html").as_uri())
    assert browser.find_elements(By.CSS_SELECTOR, "#top tbody tr"), "the index opens on a populated table"

    browser.get((site / TGA16_PAGE).as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")
    assert len(rows) > 10
    header = browser.find_element(By.CSS_SELECTOR, '#leaderboard th[data-key="robust-avg"]')
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    first = _column_values(browser, "robust-avg")
    _assert_sorted(first, descending=True)
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    again = _column_values(browser, "robust-avg")
    _assert_sorted(again, descending=False)
    assert [v for v in again if v is not None] == [v for v in first if v is not None][::-1]
    texts = [float(re.match(r"\s*(\d+\.\d+)", t).group(1)) for t in browser.execute_script(
        "var th = document.querySelector('#leaderboard th[data-key=\"robust-avg\"]');"
        "var i = Array.prototype.indexOf.call(th.parentNode.children, th);"
        "return Array.from(document.querySelectorAll('#leaderboard tbody tr')).map(function (r) {"
        "  return r.cells[i].textContent; }).filter(function (t) { return t.trim() !== '–'; });")]
    assert texts == sorted(texts)  # the printed numbers follow the value order, whatever their digits
    model = browser.find_element(By.CSS_SELECTOR, '#leaderboard th[data-key="model"]')
    model.click()
    names = browser.execute_script("return Array.from(document.querySelectorAll('#leaderboard tbody tr td.model'))"
                                   ".map(function (c) { return c.getAttribute('data-v'); });")
    assert names == sorted(names)

    browser.get((site / SYNTHETIC_PAGE).as_uri())
    everyone = _visible_names(browser)
    assert len(everyone) == 3
    box = browser.find_element(By.ID, "filter")
    box.send_keys("tecoa")
    shown = _visible_names(browser)
    assert len(shown) == 1 and "tecoa" in shown[0]
    assert "1 of 3" in browser.find_element(By.ID, "row-count").text
    box.clear()
    box.send_keys(" ")  # clear() fires no input event; a blank query shows everything again
    assert len(_visible_names(browser)) == 3
    toggle = browser.find_element(By.ID, "show-reported")
    toggle.click()
    assert len(_visible_names(browser)) == 2 and all("published" not in n for n in _visible_names(browser))
    toggle.click()
    assert len(_visible_names(browser)) == 3

    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors
    shots = Path(os.environ.get("ZSRBENCH_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "site-synthetic.png"
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, len(data)
