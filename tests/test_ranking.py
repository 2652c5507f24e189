"""Ranking rules, significance groups, intervals in tables and `zsrbench compare` (hand-built entries and flags)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

from test_leaderboard import APP, T0, cli, invoke, make, toy_reported, tree_digest, write
from zsrbench.leaderboard import ranking, store, tables
from zsrbench.leaderboard.schema import (
    AttackConfig, AuditCheck, AuditData, EntryModel, EntryProtocol, LeaderboardEntry,
)

DATASETS3 = ("shapes", "colors", "digits")


# ------------------------------------------------------------------------------------------------ helpers
def measure(lb: Path, res: Path, model: str, *, suite: str = "pgd", robust: int = 8, clean: int = 16, n: int = 20,
            datasets=DATASETS3, subset: str | None = None, version: int = 1, indices=None, eot: int | None = None,
            normalised: bool = False, per_dataset: dict | None = None) -> None:
    """One measured entry of ``model`` under ``suite`` (the first ``robust`` samples survive)."""
    made = []
    for d in datasets:
        k = (per_dataset or {}).get(d, robust)
        rec, flags = make(model, d, attacks=(suite,), robust=(k,), clean=clean, n=n, version=version,
                          indices=indices, normalised=normalised)
        proto = rec.protocol
        if subset:
            proto = proto.model_copy(update={"subset": subset})
        if eot:
            proto = proto.model_copy(update={"attacks": [AttackConfig(name=suite, family="zsrbench",
                                                                      params={"steps": 10, "step": 1.0, "eot": eot})]})
        made.append((rec.model_copy(update={"protocol": proto}), flags))
    out = res / f"{model.replace('/', '_')}-{suite}-{subset}-{version}-{len(list(res.glob('*'))) if res.exists() else 0}"
    store.add_measured(lb, write(out, *made), now=T0)


def audit(lb: Path, model: str, verdict: str = "pass", *, failed=(), randomised: bool = False, version: int = 1,
          eps_text: str = "1/255", datasets=DATASETS3) -> LeaderboardEntry:
    """An audit entry of ``datasets`` (each with ``verdict``), written into the store the way every entry is
    (immutable file with its digest)."""
    rows = {d: {"verdict": "fail" if failed else verdict} for d in datasets}
    checks = [AuditCheck(name=c, title=c, verdict="fail", summary="hand-made", per_dataset=rows) for c in failed] or \
        [AuditCheck(name="gradient_health", title="gradients", verdict=verdict, summary="hand-made", per_dataset=rows)]
    slug = f"{store.measured_slug(model, 'audit', eps_text, version)}"
    e = LeaderboardEntry(
        kind="audit", entry=slug, revision=1, created_at=T0, zsrbench_version="0.1.0", suite="audit",
        eps=1 / 255, eps_text=eps_text,
        protocol=EntryProtocol(name="toy", version=version, datasets=list(DATASETS3), train_dataset="shapes"),
        model=EntryModel(id=model, name=model),
        audit=AuditData(verdict=verdict, randomised=randomised, failed=list(failed), checks=checks,
                        datasets={d: {"n": 20} for d in datasets},
                        dataset_verdicts={d: r["verdict"] for d, r in rows.items()}))
    e = store.with_digest(e)
    edir = lb / "toy" / slug
    edir.mkdir(parents=True, exist_ok=True)
    (edir / "r0001.json").write_text(store.entry_json(e), encoding="utf-8")
    return e


def table_json(lb: Path, *extra: str) -> dict:
    out = invoke("table", "--leaderboard-dir", lb, "--json", *extra)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def ranking_group(data: dict, subset: str | None = None) -> dict:
    [g] = [g for g in data["groups"] if g["kind"] == "ranking" and g["subset"] == subset]
    return g


def md_section(md: str, title_part: str) -> str:
    """The markdown of the first group whose title contains ``title_part`` (up to the next group)."""
    return next(s for s in md.split("\n## ") if title_part in s.split("\n")[0])


# ------------------------------------------------------------------------------------------------ rules
def test_required_suites_come_from_the_protocols():
    assert ranking.required_suites("micro") == ("autoattack",)
    assert ranking.required_suites("tga16") == ("pgd", "aa-lite")
    assert ranking.required_suites("fare") == ("aa-fare",)
    assert ranking.required_suites("toy") is None  # unknown protocol: every suite is accepted


def test_failed_audit_is_listed_below_every_ranked_model_as_unreliable(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    measure(lb, res, "masked/ViT/x", robust=16)  # the highest robust number of all …
    measure(lb, res, "good/ViT/y", robust=10)
    measure(lb, res, "fine/ViT/z", robust=6)
    audit(lb, "masked/ViT/x", "fail", failed=("gradient_health", "transfer"))
    audit(lb, "good/ViT/y", "pass")
    audit(lb, "fine/ViT/z", "warn")
    g = ranking_group(table_json(lb))
    assert g["title"] == "toy v1 · ranking: worst case over all suites · ε = 1/255"
    rows = [(r["model"], r["rank"], r["audit"], r["status"]) for r in g["rows"]]
    assert rows == [("good/ViT/y", 1, "pass", "ranked"), ("fine/ViT/z", 2, "warn", "ranked"),
                    ("masked/ViT/x", None, "fail",
                     "unreliable: gradient masking (audit failed on shapes, colors, digits: gradient_health, transfer)")]
    md = invoke("table", "--leaderboard-dir", lb, "--markdown").stdout
    section = md_section(md, "ranking")
    lines = [line for line in section.split("**Clean")[0].splitlines() if line.startswith("| ")][1:]
    assert [line.split(" | ")[2] for line in lines] == ["good/ViT/y", "fine/ViT/z", "masked/ViT/x"]
    assert "unreliable" in lines[-1] and lines[-1].startswith("| – | – |") and lines[-1].rstrip().endswith("| fail |")
    # audits are never rows, in any table
    assert all(r["kind"] != "audit" and "audit" not in r["entry"] for gr in table_json(lb)["groups"] for r in gr["rows"])
    # the per-suite table still shows the suite's own numbers, with the audit verdict next to them, but no rank:
    # only ranked models are numbered, in any table
    pgd = md_section(md, "· pgd ·")
    assert "| – | masked/ViT/x | measured r0001 | unreliable: gradient masking" in pgd
    assert "| 1 | good/ViT/y | measured r0001 | ranked |" in pgd and "| 2 | fine/ViT/z |" in pgd
    assert pgd.count("| fail |") == 2  # robust and clean tables
    per_suite = invoke("table", "--leaderboard-dir", lb, "--attack", "pgd", "--json")
    rows = {r["model"]: r for g in json.loads(per_suite.stdout)["groups"] for r in g["rows"]}
    assert rows["masked/ViT/x"]["rank"] is None and rows["masked/ViT/x"]["status"].startswith("unreliable")
    assert rows["good/ViT/y"]["rank"] == 1


def test_a_model_without_the_required_suite_is_unranked(tmp_path, monkeypatch):
    monkeypatch.setattr(ranking, "required_suites", lambda name: ("autoattack",))
    lb, res = tmp_path / "lb", tmp_path / "res"
    measure(lb, res, "a/ViT/x", robust=12)  # pgd only: the best number, but no autoattack
    measure(lb, res, "b/ViT/y", robust=10)
    measure(lb, res, "b/ViT/y", suite="autoattack", robust=7)
    for m in ("a/ViT/x", "b/ViT/y"):
        audit(lb, m)
    g = ranking_group(table_json(lb))
    rows = {r["model"]: r for r in g["rows"]}
    assert [r["model"] for r in g["rows"]] == ["b/ViT/y", "a/ViT/x"]
    assert rows["a/ViT/x"]["rank"] is None and rows["a/ViT/x"]["status"] == "unranked: no autoattack"
    b = rows["b/ViT/y"]
    assert b["rank"] == 1 and b["suites"] == ["pgd", "autoattack"] and b["source"] == "worst of pgd, autoattack"
    assert b["robust"]["shapes"]["value"] == 35.0  # per-sample worst case: 7 of 20 survive both suites
    assert "every suite toy requires (autoattack)" in " ".join(g["footer"])
    # --attack shows that suite's table only, no ranking
    only = table_json(lb, "--attack", "pgd")
    assert [gr["kind"] for gr in only["groups"]] == ["suite"]


def test_a_randomised_defense_is_ranked_only_with_eot(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    measure(lb, res, "noisy/ViT/x", robust=12)  # randomised, plain PGD: unranked
    measure(lb, res, "noisy2/ViT/y", robust=9, eot=10)  # randomised, PGD with EOT: ranked
    measure(lb, res, "noisy3/ViT/z", robust=8, suite="aa-rand")  # randomised, AutoAttack's rand version: ranked
    for m in ("noisy/ViT/x", "noisy2/ViT/y", "noisy3/ViT/z"):
        audit(lb, m, randomised=True)
    rows = {r["model"]: r for r in ranking_group(table_json(lb))["rows"]}
    assert rows["noisy/ViT/x"]["rank"] is None
    assert rows["noisy/ViT/x"]["status"] == "unranked: randomised defense without EOT"
    assert rows["noisy2/ViT/y"]["rank"] == 1 and rows["noisy3/ViT/z"]["rank"] == 2


def test_uses_eot():
    rec, _ = make()
    base = LeaderboardEntry(kind="measured", entry="x", revision=1, created_at=T0, zsrbench_version="0", suite="pgd",
                            protocol=EntryProtocol(name="toy", version=1, datasets=["shapes"]),
                            model=EntryModel(id="m", name="m"),
                            measured={"attacks": [{"name": "pgd", "family": "zsrbench", "params": {"steps": 10}}],
                                      "precision": "fp32", "seed": 0, "datasets": {}})
    le = store.LoadedEntry(base, Path("."))
    assert not ranking.uses_eot(le)
    for attacks in ([{"name": "pgd", "family": "zsrbench", "params": {"eot": 20}}],
                    [{"name": "aa-rand", "family": "autoattack", "params": {}}]):
        e = base.model_copy(update={"measured": base.measured.model_copy(update={
            "attacks": [AttackConfig(**a) for a in attacks]})})
        assert ranking.uses_eot(store.LoadedEntry(e, Path(".")))


def test_subset_entries_are_never_ranked(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    measure(lb, res, "a/ViT/x", robust=12, subset="quick")
    measure(lb, res, "a/ViT/x", robust=11)  # the full sets: its own entry, its own tables
    audit(lb, "a/ViT/x")
    data = table_json(lb)
    full, quick = ranking_group(data), ranking_group(data, "quick")
    assert [r["rank"] for r in full["rows"]] == [1]
    [row] = quick["rows"]
    assert row["rank"] is None and row["status"] == "unranked: quick subset (20 per dataset)"
    assert quick["title"] == "toy v1 · quick subset · ranking: worst case over all suites · ε = 1/255"
    assert [(g["kind"], g["subset"]) for g in data["groups"]] == [("ranking", None), ("suite", None),
                                                                  ("ranking", "quick"), ("suite", "quick")]


def test_unaudited_and_reported_and_withdrawn(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    measure(lb, res, "a/ViT/x", robust=12)
    withdrawn = toy_reported(average=39.0)
    withdrawn = withdrawn.model_copy(update={
        "entry": store.reported_slug("OldNet", "pgd", "1/255", "doe24", 1),
        "model": withdrawn.model.model_copy(update={"id": "reported:doe24:OldNet", "name": "OldNet"}),
        "reported": withdrawn.reported.model_copy(update={"method": "OldNet", "withdrawn": "moved to cw in v2"})})
    store.add_reported(lb, [toy_reported(), withdrawn], now=T0)
    data = table_json(lb)
    g = ranking_group(data)
    assert [(r["model"], r["status"]) for r in g["rows"]] == [("a/ViT/x", "unranked: not audited")]
    assert any("Reported (published) numbers are not ranked" in line for line in g["footer"])
    [pgd] = [gr for gr in data["groups"] if gr["kind"] == "suite"]
    assert {r["model"] for r in pgd["rows"]} == {"a/ViT/x", "ToyNet"}  # the withdrawn entry is shown nowhere
    assert [r["audit"] for r in pgd["rows"] if r["kind"] == "reported"] == [None]


def test_rich_table_stays_readable(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    measure(lb, res, "a/ViT/x", robust=12)
    audit(lb, "a/ViT/x", "fail", failed=("black_box",))
    wide = cli.invoke(APP, ["table", "--leaderboard-dir", str(lb)], env={"COLUMNS": "200"})
    assert wide.exit_code == 0, wide.output
    assert "ranking: worst case over all suites" in wide.stdout and "unreliable" in wide.stdout
    assert "│  60.00 │" in wide.stdout  # per-dataset cells: no interval in a terminal …
    assert "60.00 ±12.5" in wide.stdout  # … the averages carry theirs
    assert "a/ViT/x — pgd — unreliable: gradient masking (audit failed on shapes, colors, digits: black_box)" \
        in wide.stdout
    narrow = cli.invoke(APP, ["table", "--leaderboard-dir", str(lb)], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0 and "per-dataset columns left out" in narrow.stdout
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80 and "60.00 ±12.5" in narrow.stdout


def test_suites_that_cannot_be_combined_leave_the_model_unranked(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    measure(lb, res, "a/ViT/x", robust=12)
    measure(lb, res, "a/ViT/x", suite="cw", robust=10, indices=list(range(5, 25)))  # cw on other samples
    measure(lb, res, "b/ViT/y", robust=9)
    for m in ("a/ViT/x", "b/ViT/y"):
        audit(lb, m)
    flags = next((lb / "toy" / store.measured_slug("b/ViT/y", "pgd", "1/255", 1)).rglob("colors.flags.npz"))
    flags.write_bytes(b"not a zip")
    out = invoke("table", "--leaderboard-dir", lb, "--json")
    assert out.exit_code == 0, out.output
    assert "the sample sets differ" in out.stderr and "colors.flags.npz" in out.stderr
    data = json.loads(out.stdout)
    rows = {r["model"]: r for r in ranking_group(data)["rows"]}
    assert rows["a/ViT/x"]["status"] == "unranked: its suites were measured on different samples"
    assert rows["b/ViT/y"]["status"] == "unranked: per-sample flags unreadable (see the warning)"
    assert all(r["rank"] is None and r["robust"]["avg"]["value"] is None for r in rows.values())
    pgd = next(g for g in data["groups"] if g["suite"] == "pgd")
    assert {r["model"] for r in pgd["rows"]} == {"a/ViT/x", "b/ViT/y"}  # the suites' own tables still show them


# ------------------------------------------------------------------------------------------------ significance
def test_significance_groups(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    n = 1000
    measure(lb, res, "m1/ViT/a", robust=500, clean=900, n=n)
    measure(lb, res, "m2/ViT/b", robust=500, clean=900, n=n, per_dataset={"shapes": 499})  # 1 sample of 3000 apart
    measure(lb, res, "m3/ViT/c", robust=200, clean=900, n=n)  # 300 samples apart on each dataset
    measure(lb, res, "m4/ViT/d", robust=150, clean=900, n=n, indices=list(range(7, 7 + n)))  # other samples
    for m in ("m1/ViT/a", "m2/ViT/b", "m3/ViT/c", "m4/ViT/d"):
        audit(lb, m)
    g = ranking_group(table_json(lb))
    rows = [(r["model"], r["rank"], r["group"]) for r in g["rows"]]
    assert rows == [("m1/ViT/a", 1, "a"), ("m2/ViT/b", 2, "a"), ("m3/ViT/c", 3, "b"), ("m4/ViT/d", 4, "b")]
    by = {r["model"]: r for r in g["rows"]}
    assert by["m1/ViT/a"]["vs_above"] is None
    v2 = by["m2/ViT/b"]["vs_above"]
    assert v2["tested"] and v2["p"] == pytest.approx(1.0) and v2["difference"] == pytest.approx(100 / 3000)
    v3 = by["m3/ViT/c"]["vs_above"]
    assert v3["tested"] and v3["significant"] and v3["p"] < 1e-6 and v3["difference"] == pytest.approx(100 * (1499 / 3000 - 0.2))
    v4 = by["m4/ViT/d"]["vs_above"]
    assert v4 == {"model": "m3/ViT/c", "tested": False, "reason": "measured on different samples of shapes"}
    text = "\n".join(g["footer"])
    assert "m4/ViT/d vs m3/ViT/c: measured on different samples of shapes" in text and "no significance" in text
    assert "paired permutation" in text
    md = md_section(invoke("table", "--leaderboard-dir", lb, "--markdown").stdout, "ranking")
    assert "| 3 | b | m3/ViT/c |" in md and "- Group: " in md


# ------------------------------------------------------------------------------------------------ intervals
def test_measured_cells_carry_intervals_in_every_format(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    measure(lb, res, "a/ViT/x", robust=8, clean=16, n=20)
    store.add_reported(lb, [toy_reported()], now=T0)
    data = table_json(lb)
    [pgd] = [g for g in data["groups"] if g["kind"] == "suite"]
    row = next(r for r in pgd["rows"] if r["kind"] == "measured")
    ci = st.binomtest(8, 20).proportion_ci(confidence_level=0.95, method="wilson")
    cell = row["robust"]["shapes"]
    assert cell["value"] == 40.0 and cell["lo"] == pytest.approx(100 * ci.low) and cell["hi"] == pytest.approx(100 * ci.high)
    avg = row["robust"]["avg"]
    assert avg["lo"] < avg["value"] < avg["hi"] and avg["hi"] - avg["lo"] < cell["hi"] - cell["lo"]
    rep = next(r for r in pgd["rows"] if r["kind"] == "reported")
    assert rep["robust"]["shapes"]["lo"] is None
    md = invoke("table", "--leaderboard-dir", lb, "--markdown", "--attack", "pgd").stdout
    half = 100 * (ci.high - ci.low) / 2
    assert f"| 40.00 ±{half:.1f} |" in md and "± is half the width of the 95% interval" in md
    import csv

    rows = list(csv.DictReader(invoke("table", "--leaderboard-dir", lb, "--csv").stdout.splitlines()))
    first = rows[0]
    assert first["table"] == "ranking" and float(first["shapes_lo"]) == pytest.approx(100 * ci.low, abs=0.005)
    assert first["audit"] == "none" and first["status"] == "unranked: not audited" and first["rank"] == ""
    html = invoke("table", "--leaderboard-dir", lb, "--html").stdout
    assert "±" in html and "95% interval" in html
    tex = invoke("table", "--leaderboard-dir", lb, "--latex").stdout
    assert r"{\scriptsize$\pm$" in tex


# ------------------------------------------------------------------------------------------------ compare
@pytest.fixture
def pair(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    measure(lb, res, "a/ViT/x", robust=8)
    measure(lb, res, "b/ViT/y", robust=8, per_dataset={"colors": 13})  # B: 5 more robust samples on colors
    return lb


def slug(model: str, suite: str = "pgd", version: int = 1) -> str:
    return "toy/" + store.measured_slug(model, suite, "1/255", version)


def test_compare_identical_flags(pair):
    out = invoke("compare", slug("a/ViT/x"), slug("a/ViT/x"), "--leaderboard-dir", pair, "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert [r["key"] for r in data["rows"]] == ["shapes", "colors", "digits", "avg", "avg_zs"]
    assert all(r["difference"] == 0 and r["p"] == 1.0 and r["lo"] == 0 == r["hi"] for r in data["rows"])


def test_compare_b_better_on_k_samples(pair):
    k = 5
    out = invoke("compare", slug("a/ViT/x"), slug("b/ViT/y"), "--leaderboard-dir", pair, "--json")
    assert out.exit_code == 0, out.output
    rows = {r["key"]: r for r in json.loads(out.stdout)["rows"]}
    colors = rows["colors"]
    assert (colors["a"], colors["b"], colors["difference"]) == pytest.approx((40.0, 65.0, -25.0))
    assert colors["p"] == pytest.approx(2 * 0.5 ** k) and (colors["only_a"], colors["only_b"]) == (0, k)
    assert colors["lo"] <= -25.0 <= colors["hi"] < 0
    assert rows["shapes"]["p"] == 1.0 and rows["shapes"]["difference"] == 0
    avg = rows["avg"]  # equally sized datasets, plain average: the pooled exact test
    assert avg["difference"] == pytest.approx(-25.0 / 3) and avg["p"] == pytest.approx(2 * 0.5 ** k)
    clean = json.loads(invoke("compare", slug("a/ViT/x"), slug("b/ViT/y"), "--leaderboard-dir", pair, "--json",
                              "--metric", "clean").stdout)
    assert all(r["difference"] == 0 for r in clean["rows"]) and clean["metric"] == "clean"
    md = invoke("compare", slug("a/ViT/x"), slug("b/ViT/y"), "--leaderboard-dir", pair, "--markdown")
    assert md.exit_code == 0 and "| colors | 20 | 40.00 | 65.00 | -25.00 |" in md.stdout and "McNemar" in md.stdout
    rich = invoke("compare", slug("a/ViT/x"), slug("b/ViT/y"), "--leaderboard-dir", pair)
    assert rich.exit_code == 0 and "colors" in rich.stdout and "0.062" in rich.stdout


def test_compare_normalised_average(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    measure(lb, res, "a/ViT/x", robust=8, normalised=True)
    measure(lb, res, "b/ViT/y", robust=8, per_dataset={"colors": 12}, normalised=True)
    data = json.loads(invoke("compare", slug("a/ViT/x"), slug("b/ViT/y"), "--leaderboard-dir", lb, "--json").stdout)
    rows = {r["key"]: r for r in data["rows"]}
    chance = 0.25  # 4 classes
    assert rows["avg_norm"]["difference"] == pytest.approx(100 * (-4 / 20) / (1 - chance) / 3)
    assert rows["avg_norm"]["p"] == pytest.approx(2 * 0.5 ** 4)  # equal weights per sample: exact


def test_compare_errors(pair, tmp_path):
    res = tmp_path / "res2"
    measure(pair, res, "c/ViT/z", indices=list(range(3, 23)))  # other samples
    measure(pair, res, "d/ViT/w", datasets=("digits",))
    measure(pair, res, "e/ViT/v", datasets=("shapes",), version=2)
    measure(pair, res, "f/ViT/u", datasets=("colors",))
    store.add_reported(pair, [toy_reported()], now=T0)
    before = tree_digest(pair)
    cases = [
        ((slug("a/ViT/x"), "no-such-entry"), "No leaderboard entry matches 'no-such-entry'"),
        ((slug("a/ViT/x"), "reported__ToyNet"), "reported entry (published numbers): it has no per-sample flags"),
        ((slug("a/ViT/x"), slug("c/ViT/z")), "measured on different samples of shapes"),
        ((slug("d/ViT/w"), slug("f/ViT/u")), "have no dataset in common"),
        ((slug("a/ViT/x"), slug("e/ViT/v", version=2)), "different protocols or protocol versions"),
        ((slug("a/ViT/x"), slug("b/ViT/y"), "--metric", "both"), "--metric takes robust or clean"),
        ((slug("a/ViT/x"), slug("b/ViT/y"), "--json", "--markdown"), "Choose one output format"),
    ]
    for args, needle in cases:
        out = invoke("compare", *args, "--leaderboard-dir", pair)
        assert out.exit_code == 2, (args, out.output)
        text = " ".join(out.output.split())
        assert needle in text and "Traceback" not in out.output, (args, out.output)
        assert out.stdout == "" or not out.stdout.strip().startswith("{")
    msg = " ".join(invoke("compare", slug("a/ViT/x"), slug("c/ViT/z"), "--leaderboard-dir", pair).output.split())
    assert "Re-run one of them with the other's --n-samples, --seed and --subset" in msg
    msg = " ".join(invoke("compare", slug("a/ViT/x"), "reported__ToyNet", "--leaderboard-dir", pair).output.split())
    assert "Name a measured entry instead" in msg
    assert tree_digest(pair) == before  # nothing written


def test_compare_resolves_names_like_show(pair):
    out = invoke("compare", "a__ViT__x", "b__ViT__y@r0001", "--leaderboard-dir", pair, "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["a"]["entry"].endswith("a__ViT__x__pgd__eps1__v1@r0001") and data["b"]["revision"] == 1
    bad = invoke("compare", "a__ViT__x", "b__ViT__y@r0009", "--leaderboard-dir", pair)
    assert bad.exit_code == 2 and "has no revision 9" in bad.output


def test_build_tables_api_without_the_cli(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    measure(lb, res, "a/ViT/x", robust=12)
    audit(lb, "a/ViT/x")
    view = store.load_store(lb)
    ts = tables.build_tables(view.entries)  # audits among the entries: used for status, not shown
    assert [g.kind for g in ts.groups] == ["ranking", "suite"]
    assert ts.groups[0].rows[0].rank == 1 and ts.groups[0].rows[0].audit == "pass"
    assert all(r.kind != "audit" for g in ts.groups for r in g.rows)
    np.testing.assert_allclose(ts.groups[0].rows[0].cells["robust"]["shapes"].value, 0.6)
