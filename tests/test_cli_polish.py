"""The command line's manners: ε spellings, --version, one error style, unwrapped logs, what `run` says before
it starts and the average it ends with, footnotes printed once."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from zsrbench.cli import app
from zsrbench.eps import parse_eps
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.render_terminal import _new_lines
from zsrbench.eps import normalise_eps
from zsrbench.leaderboard.rows import merge_items
from zsrbench.evaluation.summary import average_line, estimate_seconds

runner = CliRunner()
FAST = ["--protocol", "synthetic", "--steps", "2", "--n-samples", "8", "--jobs", "1"]


@pytest.mark.parametrize("text, units", [
    ("4", 4.0), ("4.0", 4.0), ("4/255", 4.0), (" 4 / 255 ", 4.0), ("0.0157", 4.0), ("0.031", 8.0),
    ("0.0039", 1.0), ("1/510", 0.5), ("0.5/255", 0.5), ("2.5", 2.5), ("0", 0.0), (4, 4.0), (0.0157, 4.0),
])
def test_eps_spellings(text, units):
    assert parse_eps(text) == pytest.approx(units)


@pytest.mark.parametrize("text", ["x", "1/0", "4/", "0.5", "0.25", True, "4/255/2"])
def test_eps_refused_with_guidance(text):
    with pytest.raises(ZsrError) as e:
        parse_eps(text, "--eps")
    assert "--eps" in str(e.value) and "/255" in str(e.value)


def test_table_and_run_read_eps_alike():
    assert normalise_eps("0.0157") == normalise_eps("4/255") == normalise_eps("4") == "4/255"


def test_version():
    import zsrbench

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"zsrbench {zsrbench.__version__}"


@pytest.mark.parametrize("args, phrase", [
    (["run", "--bogus"], "No such option: --bogus"),
    (["run", "--steps", "x"], "Invalid value for '--steps'"),
    (["nonsense"], "No such command 'nonsense'"),
    (["run", "--eps", "0.5"], "ambiguous"),
])
def test_one_error_style(args, phrase, tmp_path):
    r = subprocess.run([sys.executable, "-m", "zsrbench", *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and phrase in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr and "Usage:" not in r.stderr and r.stdout == ""
    assert not any(tmp_path.iterdir())  # nothing written


def test_flags_have_no_placeholder():
    r = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "--download" in r.output and "<bool>" not in r.output


def test_run_says_what_it_does_and_ends_with_the_average(tmp_path):
    args = [sys.executable, "-m", "zsrbench", "run", *FAST, "--eps", "4/255", "--results-dir", str(tmp_path / "r"),
            "--leaderboard-dir", str(tmp_path / "lb")]
    first = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    err = first.stderr.splitlines()
    assert any(line.startswith("defense clip · model zsr-tiny") for line in err)
    assert any("suite pgd · ε = 4/255 · 2 datasets (synthetic_shapes, synthetic_colors)" in line for line in err)
    assert not any("estimated attack time" in line for line in err)  # nothing to estimate from yet
    long_lines = [line for line in err if str(tmp_path / "r") in line]
    assert long_lines and all(line.endswith(".json") for line in long_lines)  # paths are never wrapped
    assert first.stdout.strip().splitlines()[-1].startswith("average over 2 datasets: clean ")
    recs = [json.loads(p.read_text()) for p in sorted((tmp_path / "r").rglob("*.json"))]
    assert {r["protocol"]["eps_text"] for r in recs} == {"4/255"}
    again = subprocess.run(args + ["--resume"], capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0 and "estimated attack time: about" in again.stderr


def test_quiet_run_prints_results_only(tmp_path):
    r = subprocess.run([sys.executable, "-m", "zsrbench", "-q", "run", *FAST, "--results-dir", str(tmp_path / "r"),
                        "--no-leaderboard"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "" and "average over 2 datasets" in r.stdout


def test_estimate_from_earlier_records(tmp_path):
    for model, wall in (("a", 10.0), ("b", 30.0)):
        p = tmp_path / "micro" / "v3" / model / "autoattack" / "eps4__quick" / "micro_color.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"timing": {"wall_s": wall}, "metrics": {"n": 64}}))
    (tmp_path / "micro" / "v3" / "a" / "autoattack" / "eps40").mkdir()  # another ε: not matched
    seconds, count = estimate_seconds(tmp_path, "micro", "autoattack", 4.0, ["micro_color", "micro_size"], 320)
    assert count == 2 and seconds == pytest.approx(20.0 / 64 * 320)
    assert estimate_seconds(tmp_path, "micro", "pgd", 4.0, ["micro_color"], None) is None


def test_average_line():
    class R:
        def __init__(self, d, c, r):
            self.protocol = type("P", (), {"dataset": d})
            self.metrics = type("M", (), {"clean_accuracy": c, "robust_accuracy": r, "clean_normalised": c / 2,
                                          "robust_normalised": r / 2})

    text = average_line([R("src", 0.8, 0.4), R("a", 0.6, 0.2), R("b", 0.4, 0.0)], False, "src")
    assert text == ("average over 3 datasets: clean 60.00 %, robust 20.00 %; zero-shot average over 2: clean 50.00 %, "
                    "robust 10.00 %")
    assert "(normalised accuracy): clean 30.00 %" in average_line([R("a", 0.6, 0.2)], True, None)


def test_shared_footnotes_are_listed_once():
    items = [("m1", "size: FAB-T kept"), ("m2", "size: FAB-T kept"), ("m1", "color: 6 targets"), "m3: average over 2"]
    assert merge_items(items) == ["size: FAB-T kept — 2 models: m1, m2", "m1, color: 6 targets", "m3: average over 2"]
    shown: set[str] = set()
    first = _new_lines(["† fallbacks:", "  - a", "  - b", "[1] src"], shown)
    assert first == ["† fallbacks:", "  - a", "  - b", "[1] src"]
    assert _new_lines(["† fallbacks:", "  - a", "  - b", "‡ deviations:", "  - c"], shown) == \
        ["† fallbacks: as listed above", "‡ deviations:", "  - c"]
