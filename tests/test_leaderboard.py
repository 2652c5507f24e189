"""The versioned leaderboard: schema, store and revisions, validation, combination, tables (golden files).

Records are built by hand (no model runs). Set ZSR_UPDATE_GOLDEN=1 to rewrite the golden files.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import numpy as np

from zsrbench.leaderboard.records import metrics_from_flags
import pytest
import typer
from typer.testing import CliRunner

from zsrbench.errors import ZsrError
from zsrbench.leaderboard import records, store
from zsrbench.leaderboard.schema import (
    AttackConfig, EntryModel, EntryProtocol, Env, Flags, LeaderboardEntry, ModelInfo, ProtocolInfo, ReportedData,
    ReportedNumbers, ResultRecord, json_schemas,
)

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
T0 = "2025-01-02T03:04:05+00:00"
T1 = "2025-02-01T00:00:00+00:00"
TOY_DATASETS = ["shapes", "colors", "digits"]
cli = CliRunner()


def _app() -> typer.Typer:
    from zsrbench.cli.leaderboard import register

    app = typer.Typer()
    register(app)
    return app


APP = _app()


def invoke(*args: str):
    return cli.invoke(APP, [str(a) for a in args])


# ------------------------------------------------------------------------------------------------ fixtures
def toy_settings(version: int = 1, normalised: bool = False) -> dict:
    return {"name": "toy", "version": version, "datasets": TOY_DATASETS, "train_dataset": "shapes",
            "normalised_average": normalised, "n_samples": None, "seed": 0, "eps": 1.0, "eps_sweep": [1.0, 2.0],
            "attack_defaults": {"pgd": {"steps": 10, "step": 1.0}, "cw": {"steps": 10, "step": 1.0}}}


def make(model: str = "clip/ViT-B-32/openai", dataset: str = "shapes", *, attacks=("pgd",), eps: float = 1.0,
         n: int = 20, n_total: int | None = None, num_classes: int = 4, clean: int = 16, robust=(8,),
         version: int = 1, created_at: str = T0, warnings=(), fallbacks=(), indices=None, normalised: bool = False,
         git_sha: str = "abc123"):
    """A hand-built record + flags: the first ``clean`` samples are correct, the first ``robust[i]`` survive attack i."""
    labels = np.arange(n) % num_classes
    clean_pred = labels.copy()
    clean_pred[clean:] = (labels[clean:] + 1) % num_classes
    cc = clean_pred == labels
    flags = {"labels": labels, "clean_pred": clean_pred, "clean_correct": cc}
    worst = cc.copy()
    for a, k in zip(attacks, robust):
        r = np.zeros(n, dtype=bool)
        r[:k] = True
        flags[f"robust__{a}"] = r & cc
        worst &= r
    flags["robust"] = worst
    metrics = metrics_from_flags(flags, num_classes, attacks)
    idx = list(range(n)) if indices is None else indices
    digest = "sha256:" + hashlib.sha256(json.dumps(idx).encode()).hexdigest()
    rec = ResultRecord(
        zsrbench_version="0.1.0", git_sha=git_sha, created_at=created_at,
        model=ModelInfo(id=model, defense=model.split("/")[0], architecture="ViT-B-32", pretrained="openai",
                        checkpoint_sha256="ab" * 32, image_size=224),
        protocol=ProtocolInfo(
            name="toy", version=version, dataset=dataset, split="test", n_total=n_total or n, n_samples=n, seed=0,
            indices_digest=digest, templates=[["a photo of a {}."]], templates_digest="sha256:" + "0" * 64,
            input_mode="crop", input_size=224, logit_scale=100.0, eps=eps / 255.0, eps_text=f"{eps:g}/255",
            suite="+".join(attacks), attacks=[AttackConfig(name=a, family="zsrbench", params={"steps": 10, "step": 1.0})
                                              for a in attacks],
            precision="fp32", success_criterion="last", settings=toy_settings(version, normalised)),
        metrics=metrics, flags=Flags(fallbacks=list(fallbacks), autoattack_warnings=list(warnings)),
        env=Env(python="3.11.9", torch="2.4.0", device="cpu (x86_64)", platform="Linux-6.1"))
    return rec, flags


def write(results: Path, *made) -> list[tuple[Path, ResultRecord]]:
    return [(records.write_result(results, rec, flags), rec) for rec, flags in made]


def toy_reported(average: float = 41.0) -> LeaderboardEntry:
    return LeaderboardEntry(
        kind="reported", entry=store.reported_slug("ToyNet", "pgd", "1/255", "doe24", 1), revision=1,
        created_at=T0, zsrbench_version="0.1.0", suite="pgd", eps=1 / 255, eps_text="1/255",
        protocol=EntryProtocol(name="toy", version=1, datasets=TOY_DATASETS, train_dataset="shapes"),
        model=EntryModel(id="reported:doe24:ToyNet", name="ToyNet", description="ViT-B/32 toy"),
        reported=ReportedData(
            source="Doe, Roe. A toy paper. 2024", source_id="doe24", method="ToyNet", attack="pgd10",
            clean=ReportedNumbers(per_dataset={"shapes": 70.0, "colors": 60.0, "digits": 50.0}, average=60.0,
                                  per_dataset_mean=60.0),
            robust=ReportedNumbers(per_dataset={"shapes": 50.0, "colors": 40.0, "digits": 30.0}, average=average,
                                   per_dataset_mean=40.0, notes=["the paper's printed average"])))


def build_fixture(tmp: Path) -> Path:
    """A fixed leaderboard: two measured models (one partial, with a warning and a deviation), a reported row,
    and a model under protocol version 2."""
    lb, res = tmp / "lb", tmp / "results"
    a = write(res, make(dataset="shapes", clean=16, robust=(8,)), make(dataset="colors", clean=18, robust=(6,)),
              make(dataset="digits", clean=12, robust=(3,)))
    b = write(res, make("tecoa/ViT-B-32/1a2b3c", "shapes", clean=15, robust=(10,),
                        warnings=["pgd: 1 sample(s) fell back to the last iterate"]),
              make("tecoa/ViT-B-32/1a2b3c", "colors", clean=14, robust=(9,), n_total=40))
    c = write(res / "v2", make("clip/ViT-B-32/openai", "shapes", version=2, clean=17, robust=(5,)))
    store.add_measured(lb, a, now=T0)
    store.add_measured(lb, b, now=T0)
    store.add_measured(lb, c, now=T0)
    store.add_reported(lb, [toy_reported()], now=T0)
    return lb


@pytest.fixture
def board(tmp_path: Path) -> Path:
    return build_fixture(tmp_path)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------ schema
def test_json_schema_files_are_up_to_date():
    for name, text in json_schemas().items():
        committed = REPO / "zsrbench" / "leaderboard" / name
        assert committed.is_file(), f"{committed} missing: run python -m zsrbench.leaderboard.schema"
        assert committed.read_text() == text, f"{name} is stale: run python -m zsrbench.leaderboard.schema"


def test_v0_record_is_migrated(tmp_path):
    rec = records.read_record(GOLDEN / "record_v0.json")
    assert rec.schema_version == 1
    assert rec.model.id == "clip/ViT-B-32/openai"
    assert rec.protocol.eps_text == "1/255" and rec.protocol.eps == pytest.approx(1 / 255)
    assert rec.protocol.suite == "pgd" and rec.protocol.attacks[0].params["steps"] == 100
    assert rec.metrics.clean_accuracy == pytest.approx(0.81) and rec.metrics.robust_accuracy == pytest.approx(0.45)
    assert rec.metrics.per_attack == {"pgd": pytest.approx(0.45)}
    assert rec.metrics.robust_normalised == pytest.approx((0.45 - 0.1) / 0.9)
    future = json.loads((GOLDEN / "record_v0.json").read_text()) | {"schema_version": 99}
    (tmp_path / "f.json").write_text(json.dumps(future))
    with pytest.raises(ZsrError, match="newer zsrbench"):
        records.read_record(tmp_path / "f.json")


def test_layout_and_rerun_adds_revision(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    first = write(res, *[make(dataset=d) for d in TOY_DATASETS])
    [p1] = store.add_measured(lb, first, now=T0)
    edir = lb / "toy" / "clip__ViT-B-32__openai__pgd__eps1__v1"
    assert p1 == edir / "r0001.json"
    assert {p.name for p in (edir / "r0001").iterdir()} == {f"{d}{s}" for d in TOY_DATASETS
                                                            for s in (".json", ".flags.npz")}
    assert store.add_measured(lb, first, now=T1) == [p1]  # the same records again: nothing new

    again = write(res, make(dataset="shapes", robust=(10,), created_at=T1, git_sha="def456"))
    [p2] = store.add_measured(lb, again, now=T1)
    assert p2.name == "r0002.json" and p1.read_bytes() == p1.read_bytes()
    e2 = store.read_entry(p2)
    assert e2.previous is not None and e2.previous.revision == 1
    assert any("shapes: robust 40.00% -> 50.00% (+10.00)" in c for c in e2.changes)
    assert any("carried over unchanged from r0001: colors, digits" in c for c in e2.changes)
    assert e2.measured.datasets["colors"].record.path == "r0001/colors.json"  # referenced, not copied
    assert list(e2.measured.datasets) == TOY_DATASETS

    def shapes(*extra):
        out = invoke("table", "--leaderboard-dir", lb, "--csv", "--metric", "robust", *extra)
        assert out.exit_code == 0, out.output
        header, row = out.stdout.splitlines()[:2]
        return dict(zip(header.split(","), row.split(",")))["shapes"]

    assert shapes() == "50.00"
    assert shapes("--as-of", "r0001") == "40.00"
    assert shapes("--as-of", "2025-01-15") == "40.00"
    assert shapes("--as-of", "2025-02-01") == "50.00"
    hist = invoke("history", "clip__ViT-B-32__openai__pgd", "--leaderboard-dir", lb, "--json")
    assert hist.exit_code == 0, hist.output
    revs = json.loads(hist.stdout)["revisions"]
    assert [r["revision"] for r in revs] == [1, 2]
    assert revs[0]["changes"] == ["first measurement: shapes, colors, digits (3 dataset(s))"]
    assert "git_sha: abc123 -> def456" in revs[1]["changes"]
    text = invoke("history", "clip__ViT-B-32__openai__pgd", "--leaderboard-dir", lb)
    assert text.exit_code == 0 and "r0002" in text.stdout and "40.00% -> 50.00%" in text.stdout
    assert invoke("validate", lb).exit_code == 0


def test_changed_attack_settings_never_drop_datasets_unless_asked(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    [first] = store.add_measured(lb, write(res, *[make(dataset=d) for d in TOY_DATASETS]), now=T0)
    rec, flags = make(dataset="shapes", created_at=T1)
    rec = rec.model_copy(update={"protocol": rec.protocol.model_copy(update={
        "attacks": [AttackConfig(name="pgd", family="zsrbench", params={"steps": 3, "step": 1.0})]})})
    files = write(res / "other", (rec, flags))
    with pytest.raises(ZsrError, match="never loses a dataset silently.*--replace-entry"):
        store.add_measured(lb, files, now=T1)
    assert [p.name for p in first.parent.glob("r*.json")] == ["r0001.json"]  # the entry is as it was
    [p] = store.add_measured(lb, files, now=T1, replace=True)
    e = store.read_entry(p)
    assert list(e.measured.datasets) == ["shapes"]
    assert any(c.startswith("attack settings:") for c in e.changes)
    assert any("dropped on request (--replace-entry) from r0001" in c for c in e.changes)
    assert e.measured.datasets["shapes"].deviations == ["pgd.steps = 3 (protocol: 10)"]


def test_add_measured_refuses_numbers_the_flags_do_not_back(tmp_path):
    rec, flags = make()
    bad = rec.model_copy(update={"metrics": rec.metrics.model_copy(update={"robust_accuracy": 0.5})})
    with pytest.raises(ZsrError, match="robust_accuracy is 0.5 but the flags give 0.4"):
        store.add_measured(tmp_path / "lb", write(tmp_path / "res", (bad, flags)))
    assert not (tmp_path / "lb").exists() or not list((tmp_path / "lb").rglob("r*.json"))


def _writer(lb: str, res: str, worker: int, count: int, barrier) -> None:
    barrier.wait()
    for i in range(count):  # every write measures other flags (equal flags would reproduce: no revision)
        made = [make(dataset=d, created_at=f"2025-03-0{worker + 1}T00:00:{i:02d}+00:00", robust=(worker * count + i,))
                for d in ("shapes", "colors")]
        out = Path(res) / f"w{worker}-{i}"
        store.add_measured(lb, write(out, *made))
        other = [make(f"m{worker}/ViT/x", "shapes", created_at=f"2025-03-0{worker + 1}T00:00:{i:02d}+00:00",
                      robust=(i,))]
        store.add_measured(lb, write(out / "o", *other))


def test_concurrent_writers_lose_nothing(tmp_path):
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
    lb, res, count = tmp_path / "lb", tmp_path / "res", 6
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(lb), str(res), w, count, barrier)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    edir = lb / "toy" / "clip__ViT-B-32__openai__pgd__eps1__v1"
    revs = store.revision_files(edir)
    assert [n for n, _ in revs] == list(range(1, 2 * count + 1))
    stamps = sorted(store.read_entry(p).measured.datasets["shapes"].measured_at for _, p in revs)
    assert len(set(stamps)) == 2 * count  # every write is there
    for n, p in revs[1:]:
        assert store.read_entry(p).previous.revision == n - 1
    for w in range(2):
        assert len(store.revision_files(lb / "toy" / f"m{w}__ViT__x__pgd__eps1__v1")) == count
    assert invoke("validate", lb).exit_code == 0


# ------------------------------------------------------------------------------------------------ validation
def test_hand_edited_entry_is_named_and_others_still_render(board):
    before = tree_digest(board)
    target = board / "toy" / "clip__ViT-B-32__openai__pgd__eps1__v1" / "r0001.json"
    data = json.loads(target.read_text())
    data["measured"]["datasets"]["colors"]["metrics"]["robust_accuracy"] = 0.9
    target.write_text(json.dumps(data, indent=2))
    edited = tree_digest(board)

    out = invoke("validate", board)
    assert out.exit_code == 1
    assert str(target) in out.output and "edited after it was written" in out.output
    assert out.output.count("invalid:") == 1

    table = invoke("table", "--leaderboard-dir", board, "--markdown", "--protocol-version", "all")
    assert table.exit_code == 0
    assert "clip/ViT-B-32/openai" not in table.stdout.split("## toy v1")[1].split("## ")[0]
    assert "tecoa/ViT-B-32/1a2b3c" in table.stdout and "ToyNet" in table.stdout
    assert "warning:" in table.stderr and "r0001.json" in table.stderr
    assert tree_digest(board) == edited and set(edited) == set(before)  # nothing deleted or rewritten


def test_corrupted_files_are_named_with_reasons(board, tmp_path):
    edir = board / "toy" / "tecoa__ViT-B-32__1a2b3c__pgd__eps1__v1"
    (edir / "r0001" / "colors.flags.npz").write_bytes(b"not a zip")
    trunc = board / "toy" / "clip__ViT-B-32__openai__pgd__eps1__v2" / "r0001.json"
    trunc.write_text(trunc.read_text()[:100])
    out = invoke("validate", board)
    assert out.exit_code == 1
    assert "colors: sidecar r0001/colors.flags.npz does not match the sha256" in out.output
    assert str(trunc) in out.output and "not a readable JSON" in out.output

    # a raw results directory whose record claims a number its flags do not give
    rec, flags = make()
    bad = rec.model_copy(update={"metrics": rec.metrics.model_copy(update={"clean_accuracy": 0.85})})
    path = records.write_result(tmp_path / "raw", bad, flags)
    out = invoke("validate", tmp_path / "raw")
    assert out.exit_code == 1
    assert str(path) in out.output and "metrics.clean_accuracy is 0.85 but the flags give 0.8" in out.output


def test_deleted_history_is_detected(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    store.add_measured(lb, write(res, make()), now=T0)
    store.add_measured(lb, write(res / "b", make(created_at=T1, robust=(9,))), now=T1)
    edir = lb / "toy" / "clip__ViT-B-32__openai__pgd__eps1__v1"
    (edir / "r0001.json").unlink()
    out = invoke("validate", lb)
    assert out.exit_code == 1 and "r0001.json is missing: history was deleted" in out.output


def test_committed_leaderboards_are_valid():
    out = invoke("validate", REPO / "leaderboards")
    assert out.exit_code == 0, out.output


# ------------------------------------------------------------------------------------------------ tables
@pytest.mark.parametrize("fmt,suffix", [("markdown", "md"), ("csv", "csv"), ("latex", "tex")])
def test_golden_renderings(board, fmt, suffix):
    out = invoke("table", "--leaderboard-dir", board, f"--{fmt}", "--protocol-version", "all")
    assert out.exit_code == 0, out.output
    golden = GOLDEN / f"leaderboard.{suffix}"
    if os.environ.get("ZSR_UPDATE_GOLDEN"):
        golden.write_text(out.stdout)
    assert out.stdout == golden.read_text()


def test_tables_show_the_latest_protocol_version_unless_asked(board):
    latest = invoke("table", "--leaderboard-dir", board, "--json")
    data = json.loads(latest.stdout)
    assert [(g["protocol"], g["protocol_version"], g["kind"]) for g in data["groups"]] == [("toy", 2, "ranking"),
                                                                                         ("toy", 2, "suite")]
    assert "3 entries of toy v1 not shown (--protocol-version 1 or all shows them)" in latest.stderr
    one = json.loads(invoke("table", "--leaderboard-dir", board, "--json", "--protocol-version", "v1").stdout)
    assert {(g["protocol"], g["protocol_version"]) for g in one["groups"]} == {("toy", 1)}
    bad = invoke("table", "--leaderboard-dir", board, "--protocol-version", "newest")
    assert bad.exit_code == 2 and "latest, all or a version number" in bad.output


def test_tables_split_protocol_versions_and_mark_things(board):
    out = invoke("table", "--leaderboard-dir", board, "--json", "--protocol-version", "all")
    data = json.loads(out.stdout)
    titles = [(g["protocol"], g["protocol_version"], g["suite"]) for g in data["groups"]]
    assert titles == [("toy", 2, "ranking"), ("toy", 2, "pgd"), ("toy", 1, "ranking"), ("toy", 1, "pgd")]
    assert any("versions 1, 2" in w for w in data["warnings"]) and "versions 1, 2" in out.stderr
    v1 = data["groups"][3]
    rows = {r["model"]: r for r in v1["rows"]}
    # measured rows first (by their average), then the reported (published) block
    assert [r["model"] for r in v1["rows"]] == ["tecoa/ViT-B-32/1a2b3c", "clip/ViT-B-32/openai", "ToyNet"]
    tecoa = rows["tecoa/ViT-B-32/1a2b3c"]
    assert tecoa["robust"]["shapes"] | {"lo": None, "hi": None} == {"value": 50.0, "marks": ["†"], "lo": None, "hi": None}
    assert tecoa["robust"]["shapes"]["lo"] < 50.0 < tecoa["robust"]["shapes"]["hi"]  # the 95% interval
    assert tecoa["robust"]["colors"]["marks"] == ["‡"] and tecoa["robust"]["digits"]["value"] is None
    assert (tecoa["robust"]["avg"]["value"], tecoa["robust"]["avg"]["marks"]) == (47.5, ["*"])
    assert (tecoa["robust"]["avg_zs"]["value"], tecoa["robust"]["avg_zs"]["marks"]) == (45.0, ["*"])
    clip = rows["clip/ViT-B-32/openai"]
    assert clip["robust"]["avg"]["value"] == pytest.approx(100 * (8 + 6 + 3) / 60)
    assert clip["clean"]["avg_zs"]["value"] == pytest.approx(100 * (18 + 12) / 40)
    toy = rows["ToyNet"]
    assert toy["kind"] == "reported" and toy["source_text"] == "Doe, Roe. A toy paper. 2024"
    assert toy["robust"]["avg"] == {"value": 41.0, "marks": ["§"], "lo": None, "hi": None}  # no flags, no interval
    assert toy["robust"]["avg_zs"]["value"] == 35.0
    only = invoke("table", "--leaderboard-dir", board, "--json", "--no-reported", "--protocol", "toy", "--eps", "1")
    assert all(r["kind"] == "measured" for g in json.loads(only.stdout)["groups"] for r in g["rows"])


def test_normalised_average(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    store.add_measured(lb, write(res, *[make(dataset=d, normalised=True, clean=c, robust=(r,))
                                        for d, c, r in (("shapes", 20, 10), ("colors", 10, 5), ("digits", 5, 5))]))
    data = json.loads(invoke("table", "--leaderboard-dir", lb, "--json").stdout)
    g = data["groups"][0]
    assert g["normalised_average"] and g["average_columns"][0]["label"] == "Avg (norm.)"
    row = g["rows"][0]
    norm = [(a - 0.25) / 0.75 for a in (0.5, 0.25, 0.25)]
    assert row["robust"]["avg"]["value"] == pytest.approx(100 * sum(norm) / 3)
    assert row["robust"]["shapes"]["value"] == 50.0  # per-dataset columns stay plain accuracy


def test_html_is_self_contained(board):
    out = invoke("table", "--leaderboard-dir", board, "--html", "--protocol-version", "all")
    html = out.stdout
    assert html.startswith("<!DOCTYPE html>") and "<script>" in html and 'class="sortable"' in html
    assert "http://" not in html and "https://" not in html and "src=" not in html
    assert "ToyNet" in html and "Doe, Roe. A toy paper. 2024" in html


def test_rich_default_and_filters(board):
    out = invoke("table", "--leaderboard-dir", board, "--attack", "pgd10")  # a reported attack name matches too
    assert out.exit_code == 0 and "ToyNet" in out.stdout
    none = invoke("table", "--leaderboard-dir", board, "--attack", "cw", "--markdown")
    assert none.exit_code == 0 and "No leaderboard entries match" in none.stdout
    bad = invoke("table", "--leaderboard-dir", board, "--eps", "one")
    assert bad.exit_code == 2 and "--eps takes" in bad.output
    missing = invoke("table", "--leaderboard-dir", board / "nope")
    assert missing.exit_code == 2 and "No leaderboard at" in missing.output


def test_results_dir_table(tmp_path):
    res = tmp_path / "res"
    write(res, make(dataset="shapes"), make(dataset="colors"))
    out = invoke("table", "--results-dir", res, "--csv")
    assert out.exit_code == 0, out.output
    import csv

    rows = list(csv.DictReader(out.stdout.splitlines()))
    assert {r["model"] for r in rows} == {"clip/ViT-B-32/openai"}
    assert all((r["shapes"], r["colors"]) == ("40.00", "40.00") for r in rows if r["metric"] == "robust")


def test_worst_of_from_flags(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    store.add_measured(lb, write(res, make(dataset="shapes", robust=(8,)), make(dataset="colors", robust=(12,))))
    store.add_measured(lb, write(res, make(dataset="shapes", attacks=("cw",), robust=(6,)),
                                 make(dataset="colors", attacks=("cw",), robust=(14,))))
    out = invoke("table", "--leaderboard-dir", lb, "--worst-of", "pgd,cw", "--json")
    assert out.exit_code == 0, out.output
    [g] = json.loads(out.stdout)["groups"]
    assert g["suite"] == "worst-of(pgd,cw)"
    assert g["rows"][0]["robust"]["shapes"]["value"] == 30.0 and g["rows"][0]["robust"]["colors"]["value"] == 60.0

    # the same model, other samples under cw: refused with a clear message
    lb2 = tmp_path / "lb2"
    store.add_measured(lb2, write(res / "x", make(dataset="shapes")))
    store.add_measured(lb2, write(res / "y", make(dataset="shapes", attacks=("cw",), indices=list(range(5, 25)))))
    out = invoke("table", "--leaderboard-dir", lb2, "--worst-of", "pgd,cw")
    assert out.exit_code == 2 and "the sample sets differ" in out.output


def test_show_tells_everything_behind_a_number(board):
    out = invoke("show", "tecoa", "--leaderboard-dir", board)
    assert out.exit_code == 0, out.output
    for needle in ("checkpoint", "ab" * 8, "sha256:", "torch 2.4.0", "pgd [zsrbench] step=1.0, steps=10", "r0001",
                   "fell back", "n = 20 of 40 (protocol: all)"):
        assert needle in out.stdout, needle
    assert invoke("show", "nothing-like-this", "--leaderboard-dir", board).exit_code == 2
    ambiguous = invoke("show", "clip", "--leaderboard-dir", board)
    assert ambiguous.exit_code == 2 and "matches 2 entries" in ambiguous.output
    data = json.loads(invoke("show", "reported__ToyNet", "--leaderboard-dir", board, "--json").stdout)
    assert data["entry"]["reported"]["source"] == "Doe, Roe. A toy paper. 2024"


# ------------------------------------------------------------------------------------------------ reported
def test_reported_tga16_rows_render_with_their_source():
    out = invoke("table", "--protocol", "tga16", "--markdown", "--leaderboard-dir", REPO / "leaderboards")
    assert out.exit_code == 0, out.output
    md = out.stdout
    assert "## tga16 v1 · pgd · ε = 1/255" in md
    # un-numbered, the protocol the paper used as the row's status, then the values
    row = next(line for line in md.splitlines() if line.startswith("| – | TGA-ZSR | reported [1] | self-reported [1]"))
    assert "precision: fp16 autocast" in row and row.split(" | ")[4:6] == ["63.95", "61.45"]
    assert "Yu, Zhang, Xu. Text-Guided Attention is All You Need for Zero-Shot Robustness" in md
    assert "3.64§" in md and "per-dataset values average to 2.64" in md  # the paper's inconsistency stays visible
    assert "TGA-ZSR (β = 0.009)" in md


def test_import_reported_is_idempotent_and_matches_committed(tmp_path):
    from zsrbench.leaderboard.reported import import_reported, reported_entries

    csv_dir = REPO.parent / "shared" / "data" / "reported"
    if not csv_dir.is_dir():
        pytest.skip("../shared/data/reported is not present (installed package)")
    committed = REPO / "leaderboards"
    copy = tmp_path / "lb"
    shutil.copytree(committed, copy)
    before = tree_digest(copy)
    paths = import_reported(csv_dir, copy)
    assert tree_digest(copy) == before, "the committed reported entries differ from the CSVs: re-run the import"
    # the project's data only (no zoo.csv): withdrawn entries stay withdrawn, and the committed entries imported
    # from the packaged zoo.csv, a file this folder lacks, are left as they are (the tree is unchanged)
    assert len(paths) == len(reported_entries(csv_dir)) == 44
    # a corrected number adds a revision, and the old one stays
    drafts = reported_entries(csv_dir)
    d = next(x for x in drafts if x.entry.startswith("reported__CLIP__cw"))
    fixed = d.model_copy(update={"reported": d.reported.model_copy(update={
        "robust": d.reported.robust.model_copy(update={"average": 2.64})})})
    [p] = store.add_reported(copy, [fixed], now=T1)
    assert p.name == "r0002.json" and "robust average: 3.64 -> 2.64" in store.read_entry(p).changes


# ------------------------------------------------------------------------------------------------ reproductions
def test_rerun_with_the_same_flags_adds_no_revision(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    [p1] = store.add_measured(lb, write(res / "a", *[make(dataset=d) for d in TOY_DATASETS]), now=T0)
    # another run: new files (other time, git sha, a nonfinite array with nothing in it), the same per-sample flags
    again = []
    for d in ("shapes", "colors"):
        rec, flags = make(dataset=d, created_at=T1, git_sha="def456")
        again.append((rec, {**flags, "nonfinite": np.zeros(len(flags["labels"]), dtype=bool)}))
    added = store.add_measured(lb, write(res / "b", *again), now=T1)
    assert added == [p1] and added.outcomes == ["reproduced"]
    edir = p1.parent
    assert [n for n, _ in store.revision_files(edir)] == [1]
    assert store.add_measured(lb, write(res / "a", *[make(dataset=d) for d in TOY_DATASETS]), now=T1).outcomes == \
        ["unchanged"]  # the very same records
    # one sample's flag differs: a new revision
    rec, flags = make(dataset="colors", created_at=T1, robust=(7,))
    changed = store.add_measured(lb, write(res / "c", (rec, flags)), now=T1)
    assert changed.outcomes == ["added"] and changed[0].name == "r0002.json"
    # the same flags on another sample set is another measurement, too
    rec, flags = make(dataset="shapes", created_at=T1, indices=list(range(100, 120)))
    other = store.add_measured(lb, write(res / "d", (rec, flags)), now=T1)
    assert other.outcomes == ["added"] and other[0].name == "r0003.json"
    assert invoke("validate", lb).exit_code == 0


def test_runner_reproducing_an_entry_says_so(tmp_path):
    from zsrbench.evaluation.config import RunConfig
    from zsrbench.evaluation.runner import run

    lb = tmp_path / "lb"
    cfg = RunConfig(protocol="synthetic", attacks=("pgd",), attack_params={"steps": 2}, leaderboard_dir=str(lb),
                    device="cpu", jobs=1)
    logs: list[list[str]] = []
    for i in range(2):
        logs.append([])
        run(RunConfig(**{**cfg.__dict__, "results_dir": str(tmp_path / f"r{i}")}), progress=False,
            log=logs[-1].append)
    [edir] = store.entry_dirs(lb)
    assert [n for n, _ in store.revision_files(edir)] == [1]
    assert any(line.startswith("leaderboard: ") for line in logs[0])
    assert any(line.startswith("reproduced r0001") for line in logs[1])
    assert not any(line.startswith("leaderboard: ") for line in logs[1])
    # other settings (a weaker attack) are another evaluation: an entry of their own, never a revision of this one
    logs.append([])
    run(RunConfig(**{**cfg.__dict__, "results_dir": str(tmp_path / "r2"), "attack_params": {"steps": 1}}),
        progress=False, log=logs[-1].append)
    assert [n for n, _ in store.revision_files(edir)] == [1]
    [other] = [d for d in store.entry_dirs(lb) if d != edir]
    assert edir.name.endswith("__variant-pgd-steps2") and other.name.endswith("__variant-pgd-steps1")
    assert any(line.startswith("leaderboard: ") and other.name in line for line in logs[-1])


# ------------------------------------------------------------------------------------------------ local paths
def _local(rec, arch="local-dir:/root/.cache/zsrbench/defenses/toy-v1/tecoa-s0-0123456789ab",
           ckpt="/root/.cache/zsrbench/defenses/toy-v1/tecoa-s0-0123456789ab"):
    return rec.model_copy(update={"model": rec.model.model_copy(update={"architecture": arch, "checkpoint": ckpt})})


def test_validate_rejects_machine_local_paths_in_the_newest_revision_only(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    made = [make("tecoa/ViT-B-32/1a2b3c", d) for d in ("shapes", "colors")]
    store.add_measured(lb, write(res / "a", *[(_local(r), f) for r, f in made]), now=T0)
    out = invoke("validate", lb)
    assert out.exit_code == 1 and "machine-local paths" in out.output and "migrate-paths" in out.output
    # a newer clean revision: the old one is history (one warning), no error
    clean = [make("tecoa/ViT-B-32/1a2b3c", d, created_at=T1, robust=(9,)) for d in ("shapes", "colors")]
    store.add_measured(lb, write(res / "b", *clean), now=T1)
    out = invoke("validate", lb)
    assert out.exit_code == 0, out.output
    assert "1 older revision(s) of 1 entry name machine-local paths" in out.output
    # records referenced by the newest revision count too (a carried-over dataset)
    lb2 = tmp_path / "lb2"
    store.add_measured(lb2, write(res / "c", (_local(made[0][0], arch="ViT-B-32"), made[0][1])), now=T0)
    store.add_measured(lb2, write(res / "d", make("tecoa/ViT-B-32/1a2b3c", "colors", created_at=T1)), now=T1)
    out = invoke("validate", lb2)
    assert out.exit_code == 1 and "records' model.checkpoint" in out.output and "r0002.json" in out.output


def test_migrate_paths_rewrites_as_a_new_revision_and_keeps_history(tmp_path):
    from zsrbench.cli import app  # `zsrbench migrate-paths` is mounted on the main app
    from zsrbench.leaderboard.maintain import migrate_paths, portable_name

    assert portable_name("/root/.cache/zsrbench/defenses/micro-v2/fare-s0-3adf6afe71e7") == \
        "cache:defenses/micro-v2/fare-s0-3adf6afe71e7"
    assert portable_name("/tmp/other_cache/defenses/micro-v2/comp_tga-s0-38e6406d1124") == \
        "cache:defenses/micro-v2/comp_tga-s0-38e6406d1124"
    assert portable_name("/data/ckpts/tecoa_eps1.pt") == "tecoa_eps1.pt" and portable_name("zsr-micro") == "zsr-micro"
    lb, res = tmp_path / "lb", tmp_path / "res"
    made = [make("tecoa/ViT-B-32/1a2b3c", d, robust=(r,)) for d, r in (("shapes", 8), ("colors", 6))]
    store.add_measured(lb, write(res / "a", (_local(made[0][0]), made[0][1])), now=T0)
    store.add_measured(lb, write(res / "b", (_local(made[1][0]), made[1][1])), now=T0)  # r0002 carries shapes
    (lb / "toy" / "clip__ViT-B-32__openai__pgd__eps1__v1").mkdir(parents=True)
    store.add_measured(lb, write(res / "c", make(dataset="shapes")), now=T0)  # a clean entry
    before = tree_digest(lb)
    table_before = invoke("table", "--leaderboard-dir", lb, "--csv").stdout
    dry = cli.invoke(app, ["migrate-paths", str(lb), "--dry-run"])
    assert dry.exit_code == 0 and "would write" in dry.output and tree_digest(lb) == before
    out = cli.invoke(app, ["migrate-paths", str(lb)])
    assert out.exit_code == 0, out.output
    assert "1 entry rewritten" in out.output and "'ViT-B-32'" in out.output
    edir = lb / "toy" / "tecoa__ViT-B-32__1a2b3c__pgd__eps1__v1"
    assert all(tree_digest(lb)[k] == v for k, v in before.items())  # nothing edited …
    e = store.read_entry(edir / "r0003.json")  # … a new revision, referencing the old one
    assert e.previous.revision == 2 and e.model.architecture == "ViT-B-32" and e.model.id == "tecoa/ViT-B-32/1a2b3c"
    assert any("model id kept" in c for c in e.changes) and any("cache:defenses/toy-v1/" in c for c in e.changes)
    for ds in ("shapes", "colors"):
        m = e.measured.datasets[ds]
        assert m.record.path == f"r0003/{ds}.json" and m.sidecar.path == f"r0003/{ds}.flags.npz"
        blob = (edir / m.record.path).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == m.record.sha256  # the new file's digest
        rec = records.read_record(edir / m.record.path)
        assert rec.model.checkpoint == "cache:defenses/toy-v1/tecoa-s0-0123456789ab"
        assert rec.model.architecture == "ViT-B-32" and rec.metrics == m.metrics
        old = store.read_entry(edir / "r0002.json").measured.datasets[ds]
        assert m.sidecar.sha256 == old.sidecar.sha256 and m.metrics == old.metrics  # flags and numbers unchanged
    out = invoke("validate", lb)
    assert out.exit_code == 0, out.output
    def numbers(text):  # the table's rows without the columns that name revisions
        import csv as csv_
        import io

        return [{k: v for k, v in row.items() if k not in ("revision", "source", "entries", "entry")}
                for row in csv_.DictReader(io.StringIO(text))]

    assert numbers(invoke("table", "--leaderboard-dir", lb, "--csv").stdout) == numbers(table_before)
    assert migrate_paths(lb) == []  # a second run: nothing to do


# ------------------------------------------------------------------------------------------------ withdrawn
def test_reported_rows_no_longer_in_the_csv_are_withdrawn_once(tmp_path):
    from zsrbench.leaderboard.reported import import_reported

    src = "third-party re-evaluation: UCAT, arXiv 2512.12997"
    head = "method,model,protocol,metric,attack,eps,average,source\n"
    csv_dir, lb = tmp_path / "csv", tmp_path / "lb"
    csv_dir.mkdir()
    (csv_dir / "others.csv").write_text(head + f'TGA-ZSR,ViT-B/32,tga16,robust,autoattack,1/255,30.52,"{src}"\n'
                                               f'TGA-ZSR,ViT-B/32,tga16,clean,none,-,49.91,"{src}"\n')
    [p] = import_reported(csv_dir, lb, now=T0)
    assert p.parent.name == "reported__TGA-ZSR__autoattack__eps1__ucat-arxiv2512.12997__v1"
    (csv_dir / "others.csv").write_text(head + f'TGA-ZSR,ViT-B/32,tga16,robust,aa-lite,1/255,30.52,"{src} (Table 16)"\n'
                                               f'TGA-ZSR,ViT-B/32,tga16,clean,none,-,49.91,"{src} (Table 16)"\n')
    added, withdrawn = import_reported(csv_dir, lb, now=T1)
    assert added.parent.name == "reported__TGA-ZSR__aa-lite__eps1__ucat-arxiv2512.12997__v1"  # same source id
    e = store.read_entry(withdrawn)
    assert withdrawn.name == "r0002.json" and e.previous.revision == 1
    assert "aa-lite" in e.reported.withdrawn and e.changes == [f"withdrawn: {e.reported.withdrawn}"]
    assert e.reported.robust.average == 30.52  # the numbers stay in the history
    before = tree_digest(lb)
    assert import_reported(csv_dir, lb, now=T1) == [added] and tree_digest(lb) == before  # again: a no-op
    assert invoke("validate", lb).exit_code == 0
