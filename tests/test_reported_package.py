"""Published (reported) numbers ship inside the package and fill in leaderboards that hold none.

The CSVs in ``zsrbench/reported_data`` are the importer's default; ``zsrbench table`` on a folder without
reported entries of a protocol (or with no folder at all) builds them in memory, equal to the committed
``leaderboards/tga16`` and ``leaderboards/fare`` entries, and writes nothing. The last test installs the package
for real (not editable) and runs the table from an empty folder.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zsrbench.cli import app
from zsrbench.leaderboard import board, reading, store
from zsrbench.leaderboard.reported import import_reported, packaged_csv_dir, packaged_entries, reported_entries

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "leaderboards"
SHARED = REPO.parent / "shared" / "data" / "reported"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def committed_reported() -> dict[tuple[str, str], object]:
    """(protocol, slug) -> newest revision of every committed reported entry that is not withdrawn."""
    out = {}
    for protocol in ("tga16", "fare"):
        for edir in store.entry_dirs(COMMITTED, protocol):
            if edir.name.startswith("reported__"):
                e = store.read_entry(store.revision_files(edir)[-1][1])
                if not e.reported.withdrawn:
                    out[(protocol, e.entry)] = e
    return out


# the paper's TGA-ZSR row: never numbered, its status the protocol the paper used, then its first two values
TGA_ROW = re.compile(r"^\| – \| TGA-ZSR \| reported \[1\] \| self-reported \[1\] · [^|]* \| 63\.95 \| 61\.45 \|", re.M)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ------------------------------------------------------------------------------------------ the packaged data
def test_packaged_csvs_are_the_project_data_and_the_importer_default():
    csvs = sorted(p.name for p in packaged_csv_dir().glob("*.csv"))
    assert csvs == ["others.csv", "tga16_neurips24.csv", "zoo.csv"]  # zoo.csv: the zoo's rows, not project data
    assert (packaged_csv_dir() / "README.md").is_file()
    if SHARED.is_dir():  # the project's source of these numbers, next to the checkout
        shared = sorted(p.name for p in SHARED.glob("*.csv"))
        assert set(shared) <= set(csvs), f"{SHARED} has CSVs the package lacks"
        for name in shared:  # every CSV of the project's data is shipped byte for byte
            assert filecmp.cmp(packaged_csv_dir() / name, SHARED / name, shallow=False), f"{name} differs from {SHARED}"
    assert [e.entry for e in reported_entries()] == [e.entry for e in reported_entries(packaged_csv_dir())]


def test_in_memory_entries_equal_the_committed_reported_entries():
    committed = committed_reported()
    shipped = {(e.protocol.name, e.entry): e for e in packaged_entries()}
    assert set(shipped) == set(committed) and len(shipped) == 75  # 44 of the project's CSVs + 31 of zoo.csv
    assert sum(e.reported.imported_from == "data/reported/zoo.csv" for e in shipped.values()) == 31
    assert {p for p, _ in shipped} == {"tga16", "fare"}
    for key, e in shipped.items():
        c = committed[key]
        for f in ("kind", "protocol", "model", "suite", "eps", "eps_text", "reported"):
            assert getattr(e, f) == getattr(c, f), f"{key}: {f} differs"
    clip_cw = shipped[("tga16", "reported__CLIP__cw__eps1__tga-zsr-neurips24__v1")].reported.robust
    assert clip_cw.average == 3.64 and round(clip_cw.per_dataset_mean, 2) == 2.64 and clip_cw.per_dataset["stl10"] == 10.59
    assert [e.entry for e in packaged_entries("fare")] == [e.entry for e in shipped.values() if e.protocol.name == "fare"]


def test_importing_the_packaged_csvs_into_the_checkout_changes_nothing(tmp_path):
    copy = tmp_path / "lb"
    for protocol in ("tga16", "fare"):
        shutil.copytree(COMMITTED / protocol, copy / protocol)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    paths = import_reported(None, copy)  # None: the CSVs shipped in the package
    assert len(paths) == 75  # every entry as it was (the 2 withdrawn ones stay withdrawn, unchanged)
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------------------------------ tables from memory
def test_table_from_an_empty_folder_equals_the_checkouts_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZSRBENCH_HOME", raising=False)
    for protocol in ("tga16", "fare"):
        here = invoke("table", "--protocol", protocol, "--markdown")
        assert here.exit_code == 0, here.output
        checkout = invoke("table", "--protocol", protocol, "--markdown", "--leaderboard-dir", COMMITTED)
        assert here.stdout == checkout.stdout
        assert "reported [1]" in here.stdout and "nothing was written" in here.stderr
    md = invoke("table", "--protocol", "tga16", "--markdown").stdout
    assert TGA_ROW.search(md) and "3.64§" in md
    everything = json.loads(invoke("table", "--json").stdout)
    assert {g["protocol"] for g in everything["groups"]} == {"tga16", "fare"}
    assert all(r["kind"] == "reported" for g in everything["groups"] for r in g["rows"])
    assert list(tmp_path.iterdir()) == []  # no leaderboards/ (or anything else) was created


def test_csv_of_in_memory_entries_has_the_same_numbers_as_the_checkouts(tmp_path, monkeypatch):
    import csv
    import io

    monkeypatch.chdir(tmp_path)
    here = invoke("table", "--protocol", "fare", "--csv")
    checkout = invoke("table", "--protocol", "fare", "--csv", "--leaderboard-dir", COMMITTED)
    assert here.exit_code == checkout.exit_code == 0
    drop = ("revision",)  # the committed entries are revisions of their own; in memory every entry is r0001
    a = [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(io.StringIO(here.stdout))]
    b = [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(io.StringIO(checkout.stdout))]
    # (4 ViT-L/14 models × 2 ε + 10 models of zoo.csv × 3 ε) × (robust, clean)
    assert a == b and len(a) == 78


def _folder_with(tmp_path: Path, *entries: str) -> Path:
    lb = tmp_path / "lb"
    for name in entries:
        shutil.copytree(COMMITTED / name, lb / name)
    return lb


def test_a_folder_with_reported_entries_of_a_protocol_is_used_as_it_is(tmp_path):
    lb = _folder_with(tmp_path, "tga16/reported__CLIP__pgd__eps1__tga-zsr-neurips24__v1")
    out = invoke("table", "--protocol", "tga16", "--json", "--leaderboard-dir", lb)
    assert out.exit_code == 0, out.output
    rows = [r["model"] for g in json.loads(out.stdout)["groups"] for r in g["rows"]]
    assert rows == ["CLIP"] and "shipped" not in out.stderr  # the one entry, nothing added
    fare = invoke("table", "--protocol", "fare", "--json", "--leaderboard-dir", lb)  # none of fare: from memory
    assert fare.exit_code == 0 and len(json.loads(fare.stdout)["groups"]) == 4 and "for fare" in fare.stderr  # ε 1, 2, 4; aa-lite at 4 (QT-AFT)


def test_published_rows_join_the_protocols_a_folder_is_about(tmp_path):
    # a folder of micro entries shows no tga16 rows unless asked for them
    micro = next(d for d in store.entry_dirs(COMMITTED, "micro") if "__pgd__" in d.name)
    lb = _folder_with(tmp_path, f"micro/{micro.name}")
    assert board.packaged_protocols(lb) == []
    assert board.packaged_protocols(lb, "tga16") == ["tga16"]
    assert board.packaged_protocols(tmp_path / "nowhere") == ["tga16", "fare"]
    assert board.packaged_protocols(COMMITTED) == []  # the checkout has its own
    shown = {le.entry.protocol.name for le in board.load_leaderboard(lb).entries}
    assert shown == {"micro"}
    view = board.load_leaderboard(lb, "tga16")
    assert {le.entry.kind for le in view.entries} == {"reported"} and len(view.entries) == 36
    assert all(le.file is None for le in view.entries) and view.notes
    assert board.load_leaderboard(lb, "tga16", reported=False).entries == []
    assert list((tmp_path / "lb").rglob("reported__*")) == []


def test_missing_folders_and_no_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    typo = invoke("table", "--leaderboard-dir", tmp_path / "leaderbords")
    assert typo.exit_code == 2 and "No leaderboard at" in typo.output and "Traceback" not in typo.output
    bare = invoke("table", "--no-reported", "--markdown")
    assert bare.exit_code == 0 and "No leaderboard entries match" in bare.stdout and "no leaderboard at" in bare.stderr
    micro = invoke("table", "--protocol", "micro", "--markdown")  # a protocol without published numbers
    assert micro.exit_code == 0 and "No leaderboard entries match" in micro.stdout
    assert invoke("table", "--protocol", "tga17").exit_code == 2


def test_show_and_history_of_an_in_memory_entry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = invoke("show", "reported__CLIP__cw", "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["entry"]["reported"]["robust"]["average"] == 3.64
    assert Path(data["file"]) == packaged_csv_dir() / "tga16_neurips24.csv"
    text = invoke("show", "reported__CLIP__cw")
    assert text.exit_code == 0 and "shipped with zsrbench" in text.stdout and "per-dataset values average to 2.64" \
        in " ".join(text.stdout.split())
    assert invoke("show", "reported__CLIP__cw@r0002").exit_code == 2
    hist = invoke("history", "reported__CLIP__cw")
    assert hist.exit_code == 2 and "has no revisions" in " ".join(hist.output.split())
    many = invoke("show", "TGA-ZSR")
    assert many.exit_code == 2 and "be more specific" in many.output
    none = invoke("show", "no-such-entry")
    assert none.exit_code == 2 and "No leaderboard entries under" in none.output
    # a folder with its own reported entries of tga16 is searched, not the shipped ones
    lb = _folder_with(tmp_path, "tga16/reported__CLIP__pgd__eps1__tga-zsr-neurips24__v1")
    assert invoke("show", "reported__CLIP__cw", "--leaderboard-dir", lb).exit_code == 2
    assert list(tmp_path.glob("leaderboards")) == []


# ------------------------------------------------------------------------------------------ a real install
def _copy_for_build(dest: Path) -> Path:
    """What a build needs (pyproject, README, the package), so building leaves no artefact in the checkout."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "zsrbench", dest / "zsrbench",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return dest


@pytest.mark.slow  # a wheel build and a fresh interpreter: about a minute; part of the suite (CI runs it)
def test_installed_package_shows_reported_rows_from_an_empty_folder(tmp_path):
    src = _copy_for_build(tmp_path / "src")
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                            "--no-index", "--quiet", "--target", str(target), str(src)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    assert all((target / "zsrbench" / "reported_data" / f).is_file() for f in ("tga16_neurips24.csv", "zoo.csv"))
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "ZSRBENCH_CACHE": str(tmp_path / "cache")}
    env.pop("ZSRBENCH_HOME", None)
    where = subprocess.run([sys.executable, "-c", "import zsrbench; print(zsrbench.__file__)"], cwd=empty, env=env,
                           capture_output=True, text=True, timeout=120)
    assert Path(where.stdout.strip()).is_relative_to(target), where.stdout + where.stderr  # not the checkout
    out = subprocess.run([sys.executable, "-m", "zsrbench", "table", "--protocol", "tga16", "--markdown"],
                         cwd=empty, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "## tga16 v1 · pgd · ε = 1/255" in out.stdout
    assert TGA_ROW.search(out.stdout) and "reported [3]" in out.stdout
    assert list(empty.iterdir()) == []


# ------------------------------------------------------------------------------------------ pandas frames
def _tga16_tables():
    from zsrbench.leaderboard import tables

    view = board.load_leaderboard(COMMITTED, "tga16")
    return tables.build_tables([le for le in view.entries if le.entry.kind != "audit"])


def test_table_frame_is_tidy_and_the_csv_is_its_pivot():
    import csv
    import io
    import math

    from zsrbench.leaderboard import frame, render

    ts = _tga16_tables()
    tidy = frame.table_frame(ts)
    assert list(tidy.columns) == frame.TIDY_COLUMNS
    n_lines = sum(len(g.rows) for g in ts.groups) * len(ts.metrics)
    assert tidy["line"].nunique() == n_lines
    assert len(tidy) == sum(len(g.rows) * len(g.columns) for g in ts.groups) * len(ts.metrics)
    assert not tidy.duplicated(["line", "column"]).any()  # one row per line × column
    tga = tidy[(tidy.suite == "pgd") & (tidy.model == "TGA-ZSR") & (tidy.metric == "robust")
               & tidy.source.str.startswith("Yu, Zhang, Xu")]
    by_col = dict(zip(tga.column, tga.value))
    assert by_col["tinyimagenet"] == pytest.approx(63.95) and by_col["avg"] == pytest.approx(42.09)
    assert set(tga[tga.is_average].column) == {"avg", "avg_zs"}
    assert tga.lo.isna().all() and tga.hi.isna().all()  # reported numbers have no interval
    clip = tidy[(tidy.suite == "cw") & (tidy.model == "CLIP") & (tidy.metric == "robust") & (tidy.column == "avg")]
    assert clip.cell_marks.tolist() == ["§"] and clip.marks.tolist() == ["§"]
    assert str(tidy["rank"].dtype) == "Int64" and str(tidy["revision"].dtype) == "Int64"
    # the CSV is the wide form: same numbers, columns <key>, <key>_lo, <key>_hi
    wide = frame.wide_frame(ts)
    assert len(wide) == n_lines and list(wide.columns[:len(frame.LINE_COLUMNS)]) == frame.LINE_COLUMNS
    text = render.to_csv(ts)
    assert text == frame.to_csv(ts) and text.splitlines()[0] == ",".join(wide.columns)
    rows = list(csv.DictReader(io.StringIO(text)))
    for (_, t), row in zip(tidy.groupby("line", sort=True), rows):
        for col, value in zip(t.column, t.value):
            assert row[col] == ("" if math.isnan(value) else f"{value:.2f}")


def test_empty_tables_give_empty_frames():
    from zsrbench.leaderboard import frame
    from zsrbench.leaderboard.table_model import TableSet

    assert frame.table_frame(TableSet()).empty and frame.records_frame([]).empty
    assert frame.to_csv(TableSet()).splitlines() == [",".join([*frame.LINE_COLUMNS, "marks", "notes"])]


def test_records_frame_has_one_row_per_record_and_metric():
    from test_leaderboard import make

    from zsrbench import stats
    from zsrbench.leaderboard import frame

    one, _ = make(dataset="shapes", attacks=("pgd", "cw"), n=20, clean=16, robust=(10, 8))
    two, _ = make(dataset="colors", n=20, clean=12, robust=(3,))
    df = frame.records_frame([one, two])
    assert list(df.columns) == frame.RECORD_COLUMNS
    shapes = df[df.dataset == "shapes"]
    assert shapes[["metric", "attack"]].values.tolist() == [["clean", ""], ["robust", "pgd+cw"], ["robust", "pgd"],
                                                            ["robust", "cw"]]
    assert shapes.value.tolist() == pytest.approx([80.0, 40.0, 50.0, 40.0])
    iv = stats.wilson(8, 20)
    worst = shapes[shapes.attack == "pgd+cw"].iloc[0]
    assert (worst.lo, worst.hi) == pytest.approx((100 * iv.lo, 100 * iv.hi))
    assert worst.normalised == pytest.approx(100 * (0.4 - 0.25) / 0.75)
    assert df[df.dataset == "colors"].metric.tolist() == ["clean", "robust"]  # one attack: no per-attack rows


# ------------------------------------------------------------------------------------------ optional dependencies
def test_tga16_only_packages_are_imported_when_used_with_a_clear_error(monkeypatch):
    import zsrbench.data.readers as rd
    from zsrbench.errors import ZsrError

    assert rd.require_h5py().__name__ == "h5py"  # installed here: the module itself
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "gdown", None)
    for call, pkg in ((rd.require_h5py, "h5py"), (rd.require_gdown, "gdown")):
        with pytest.raises(ZsrError) as err:
            call()
        text = str(err.value)
        assert f"needs the Python package {pkg}" in text and 'pip install "zsrbench[tga16]"' in text
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ZsrError, match=r"Reading .*cars_annos.mat .*needs the Python package scipy"):
        rd.loadmat(Path("cars_annos.mat"))
