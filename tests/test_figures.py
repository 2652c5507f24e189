"""`zsrbench attention` and `zsrbench plot`: the figures are real PNG/SVG files that are not blank, the
attention-shift record holds what it says (recomputed here from maps of the test's own), and bad input exits 2
having written nothing.

Everything runs on ``fig_toy``: three micro tasks, 12 seeded images, PGD of 2 steps, and a fine-tuning recipe
of 2 steps (so Comp-TGA is trained on demand in seconds, in the tests' own cache).
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zsrbench.cli import app
from zsrbench.figures.shift import attention_shift, summarise
from zsrbench.protocols import Protocol
from zsrbench.registry import PROTOCOLS, load_builtins

cli = CliRunner()
PROTOCOL = "fig_toy"
TASKS = ("micro_shape", "micro_color", "micro_size")
N = 12  # images per task in the plots' runs
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def toy_protocol():
    load_builtins()
    micro: Protocol = PROTOCOLS.get("micro")
    recipe = {**micro.train_recipe, "steps": 2, "batch_size": 16, "warmup_steps": 1}
    PROTOCOLS.add(PROTOCOL, replace(
        micro, name=PROTOCOL, version=1, datasets=TASKS, train_dataset="micro_shape", batch_size=8, n_samples=N,
        attack_defaults={"pgd": {"steps": 2, "step": 1.0}, "cw": {"steps": 2, "step": 1.0, "kappa": 50.0}},
        train_recipe=recipe, required_suites=("pgd",), subsets={}, default_subset=None), origin="tests")
    yield


def png_pixels(path: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(path)


def assert_png(path: Path, min_side: int = 300) -> None:
    blob = path.read_bytes()
    assert blob[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    img = png_pixels(path)
    assert img.ndim == 3 and min(img.shape[:2]) >= min_side, img.shape
    assert float(img[..., :3].var()) > 1e-3, "the image is blank"


def assert_svg(path: Path) -> None:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg"), root.tag
    assert path.stat().st_size > 10_000
    assert len(list(root.iter())) > 100  # drawn elements, not an empty canvas


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# --- the pure math ------------------------------------------------------------------------------------------


def test_shift_of_hand_computed_maps():
    clean = torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]])
    adv = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]])
    # image 0: difference (0, 1, 0, -1) -> sqrt(2); image 1: unchanged -> 0
    assert torch.allclose(attention_shift(clean, adv), torch.tensor([math.sqrt(2.0), 0.0]))
    assert torch.allclose(attention_shift(clean.flatten(1), adv.flatten(1)), torch.tensor([math.sqrt(2.0), 0.0]))
    s = summarise([1.0, 2.0, 3.0])
    assert (s.n, s.mean, s.std) == (3, 2.0, 1.0)
    assert s.se == pytest.approx(1.0 / math.sqrt(3.0))
    assert summarise([4.0]).se is None
    with pytest.raises(ValueError):
        attention_shift(clean, adv[:, :1])


# --- zsrbench attention --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def attention_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("attention")
    results = out / "results"
    res = cli.invoke(app, ["attention", "--protocol", PROTOCOL, "--defense", "comp_tga,clip", "--n-images", "2",
                           "--n-shift", "6", "--out", str(out / "att.png"), "--out", str(out / "att.svg"),
                           "--results-dir", str(results), "--quiet"])
    assert res.exit_code == 0, res.output
    return out, results, res.output


def test_attention_figure_files(attention_run):
    out, _, output = attention_run
    assert_png(out / "att.png", min_side=500)
    assert_svg(out / "att.svg")
    assert "attention shift" in output and "comp_tga" in output and "clip (base)" in output


def _records(results: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["model"]["defense"]: json.loads(p.read_text())
            for p in results.rglob("*.json")}


def test_attention_shift_records(attention_run):
    _, results, _ = attention_run
    recs = _records(results)
    assert set(recs) == {"clip", "comp_tga"}  # `clip` is the base model itself: one record
    for path in results.rglob("*.json"):
        assert path.parts[-5:-1] == (path.parts[-5], "attention", "pgd", "eps4__n6"), path
        assert path.name == "micro_color.json"  # the first zero-shot task
    comp, base = recs["comp_tga"], recs["clip"]
    assert comp["kind"] == "attention_shift" and comp["schema_version"] == 1
    assert comp["base_model"] == base["model"]["id"] and base["base_model"] is None
    assert comp["model"]["tensors_sha256"] and comp["model"]["text_tower_sha256"]
    assert comp["attack"] == {"name": "pgd", "family": "zsrbench",
                              "params": {"step": 1.0, "steps": 2, "restarts": 1, "eot": 1, "criterion": "last"}}
    p = comp["protocol"]
    assert (p["name"], p["version"], p["dataset"], p["n_samples"], p["seed"]) == (PROTOCOL, 1, "micro_color", 6, 0)
    assert p["eps"] == pytest.approx(4 / 255) and p["eps_text"] == "4/255" and p["indices_digest"].startswith("sha256:")
    assert comp["map"]["norm"] == "token_axis" and comp["map"]["size"] == 224
    assert comp["map"]["nonclass_template"] == "This is not a photo of a {}"
    assert base["map"]["nonclass_template"] is None and base["complementary_shift"] is None
    for rec in (comp, base):
        s = rec["shift"]
        assert s["n"] == len(s["values"]) == 6
        assert s["mean"] == pytest.approx(float(np.mean(s["values"])))
        assert s["se"] == pytest.approx(float(np.std(s["values"], ddof=1)) / math.sqrt(6))
        assert rec["zsrbench_version"] and rec["env"]["torch"] and rec["created_at"]
    assert len(comp["complementary_shift"]["values"]) == 6


def test_recorded_shift_equals_the_shift_of_maps_computed_here(attention_run):
    """Rebuild the base model, attack the same images with the same seed and compute its maps directly with
    zsrbench.defenses.attention: the recorded per-image shifts are the pure function of those maps."""
    from zsrbench.data.base import indices_digest, select_indices
    from zsrbench.defenses import attention as att
    from zsrbench.evaluation.unit import batch_seed
    from zsrbench.models.classifier import make_classifier
    from zsrbench.registry import ATTACKS, DATASETS
    from zsrbench.evaluation.config import RunConfig
    from zsrbench.evaluation.model import prepare_model

    _, results, _ = attention_run
    rec = _records(results)["clip"]
    protocol = PROTOCOLS.get(PROTOCOL)
    _, parts, _ = prepare_model(RunConfig(defense="clip", protocol=PROTOCOL, device="cpu"), protocol, device="cpu",
                                seed=0)
    evalset = DATASETS.get("micro_color").build(None, image_size=parts.image_size)
    indices = select_indices(len(evalset), 6, 0)
    assert indices_digest(indices) == rec["protocol"]["indices_digest"]
    x = torch.stack([evalset.dataset[i][0] for i in indices]).float()
    y = torch.tensor([int(evalset.dataset[i][1]) for i in indices])
    clf, _ = make_classifier(parts, evalset.info.prompts(), device="cpu")
    x_adv = ATTACKS.get("pgd")(clf, x, y, eps=4.0, seed=batch_seed(0, "pgd", 0), **rec["attack"]["params"]).x_adv

    def maps(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            _, feats = att.projected_tokens(clf, images)
            return att.text_guided_attention(feats, clf.head[y], size=224, norm="token_axis")

    expected = attention_shift(maps(x), maps(x_adv))
    assert np.allclose(rec["shift"]["values"], expected.numpy(), rtol=1e-5, atol=1e-5)
    assert float(expected.max()) > 0  # the attack did move the maps


def test_shift_records_are_valid_and_not_taken_for_result_records(attention_run):
    from zsrbench.leaderboard.reading import entries_from_results
    from zsrbench.leaderboard.validate import validate_path

    _, results, _ = attention_run
    report = validate_path(results)
    assert report.ok, [(str(p.path), p.reason) for p in report.problems]
    view = entries_from_results(results)
    assert view.problems == [] and view.entries == []
    bad = next(results.rglob("*.json"))
    doc = json.loads(bad.read_text())
    doc["shift"]["n"] = 5  # no longer the number of values
    damaged = bad.with_name("damaged.json")
    damaged.write_text(json.dumps(doc))
    try:
        assert not validate_path(results).ok
    finally:
        damaged.unlink()


@pytest.mark.parametrize("args, words", [
    (["--defense", "comp_tga,no_such_defense"], "no_such_defense"),
    (["--dataset", "micro_nothing"], "micro_nothing"),
    (["--out", "FIG/att.pdf"], ".pdf"),
    (["--out", "FIG/att.png", "--format", "svg"], "--format"),
    (["--n-images", "9", "--n-shift", "4"], "--n-shift"),
    (["--defense", "clip,tecoa", "--checkpoint", "x.pt"], "--checkpoint"),
    (["--norm", "sideways"], "--norm"),
    (["--attack", "pgd,cw"], "one attack"),
    (["--eps", "0.5"], "ambiguous"),
])
def test_attention_bad_input_exits_2_and_writes_nothing(tmp_path, args, words):
    args = [a.replace("FIG", str(tmp_path / "fig")) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "fig" / "att.png")]
    res = cli.invoke(app, ["attention", "--protocol", PROTOCOL, "--n-shift", "4", "--n-images", "2", *args,
                           "--results-dir", str(tmp_path / "results"), "--quiet"][:], catch_exceptions=False)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and words in res.output.replace("\n", " ")
    assert files_under(tmp_path) == []


# --- zsrbench plot -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """clip at ε = 1, 2, 4 and comp_tga at ε = 1, 4 (PGD-2, 12 images per task) into a results folder and a
    leaderboard."""
    from zsrbench.evaluation.config import RunConfig
    from zsrbench.evaluation.runner import run

    root = tmp_path_factory.mktemp("plots")
    results, board = root / "results", root / "leaderboards"
    for defense, eps_list in (("clip", (1.0, 2.0, 4.0)), ("comp_tga", (1.0, 4.0))):
        for eps in eps_list:
            run(RunConfig(defense=defense, protocol=PROTOCOL, attacks=("pgd",), eps=eps, device="cpu",
                          results_dir=str(results), leaderboard_dir=str(board), jobs=1), progress=False)
    return root, results, board


@pytest.mark.parametrize("command", ["eps", "tradeoff"])
@pytest.mark.parametrize("source", ["--leaderboard-dir", "--results-dir"])
def test_plot_commands_draw_png(runs, tmp_path, command, source):
    _, results, board = runs
    out = tmp_path / f"{command}.png"
    res = cli.invoke(app, ["plot", command, "--protocol", PROTOCOL, source,
                           str(board if source == "--leaderboard-dir" else results), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert_png(out)


def test_plot_svg_by_format(runs, tmp_path):
    _, _, board = runs
    res = cli.invoke(app, ["plot", "eps", "--protocol", PROTOCOL, "--leaderboard-dir", str(board),
                           "--out", str(tmp_path / "eps"), "--format", "png,svg", "--dataset", "micro_color"])
    assert res.exit_code == 0, res.output
    assert_png(tmp_path / "eps.png")
    assert_svg(tmp_path / "eps.svg")


def test_eps_series_are_the_entries_numbers(runs):
    from zsrbench.figures import plots
    from zsrbench.leaderboard import rows

    _, _, board = runs
    entries, warnings = plots.load_entries(leaderboard_dir=board, protocol=PROTOCOL)
    assert warnings == []
    chosen = plots.choose(entries, plots.Selection(protocol=PROTOCOL))
    assert chosen.suite == "pgd" and chosen.subset is None
    series, _ = plots.eps_series(chosen, dataset="micro_size")
    by_label = {s.label: s for s in series}
    assert set(by_label) == {"clip", "comp_tga"}
    assert [x for x, _ in by_label["clip"].points] == [0.0, 1.0, 2.0, 4.0]
    assert [x for x, _ in by_label["comp_tga"].points] == [0.0, 1.0, 4.0]
    e4 = next(le.entry for le in entries if le.entry.model.defense == "clip" and le.entry.eps_text == "4/255")
    m = e4.measured.datasets["micro_size"]
    v = dict(by_label["clip"].points)[4.0]
    assert v.value == m.metrics.robust_accuracy
    assert (v.lo, v.hi) == rows.dataset_interval(m, "robust")
    assert dict(by_label["clip"].points)[0.0].value == m.metrics.clean_accuracy
    # the zero-shot average leaves out the source task and is normalised, as the tables' averages are
    avg, _ = plots.eps_series(chosen)
    cols = ["micro_color", "micro_size"]
    clip4 = dict(next(s for s in avg if s.label == "clip").points)[4.0]
    assert clip4.value == pytest.approx(np.mean([e4.measured.datasets[d].metrics.robust_normalised for d in cols]))
    assert (clip4.lo, clip4.hi) == rows.average_interval([e4.measured.datasets[d] for d in cols], "robust", True)


def legend_texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


RANK_NUMBER = re.compile(r"#\s*\d|\brank\b|^\s*\d+[.)]?\s", re.IGNORECASE)  # "#1", "rank 2", "1. clip"


def test_a_legend_never_ranks_and_marks_an_unranked_model_with_its_reason():
    from zsrbench.figures.plots import marked

    assert marked("clip", [("4/255", "ranked")]) == "clip"
    assert marked("clip", [("4/255", None)]) == "clip"  # unknown: no mark, and never a number
    reason = "unreliable: gradient masking (audit failed on micro_shape: transfer)"
    assert marked("tecoa", [("4/255", reason)]) == "tecoa (unreliable: gradient masking)"
    both = [("1/255", "unranked: not audited"), ("4/255", "ranked")]
    assert marked("fare", both) == "fare (unranked: not audited at ε = 1/255)"
    label = "self-reported [1] · not ranked · attack: PGD-100"
    assert marked("x", [(None, label)]) == "x (self-reported [1])"


def test_plots_mark_the_models_the_ranking_rules_do_not_rank(runs):
    from zsrbench.figures import plots

    _, _, board = runs
    loaded = plots.load_board(leaderboard_dir=board, protocol=PROTOCOL)
    assert loaded.audits == []  # nothing audited: no model is ranked
    chosen = plots.choose(loaded.entries, plots.Selection(protocol=PROTOCOL), audits=loaded.audits)
    assert set(chosen.standing) >= {le.entry.entry for le in chosen.entries}
    assert all(st.startswith("unranked: ") for st in chosen.standing.values()), chosen.standing
    fig, _ = plots.eps_figure(chosen)
    legend = legend_texts(fig)
    assert {t.split(" (")[0] for t in legend} == {"clip", "comp_tga"}
    assert all("(unranked: " in t and not RANK_NUMBER.search(t) for t in legend), legend
    # ranked at one ε, unreliable at another: the reason names the ε it holds at
    reason = "unreliable: gradient masking (audit failed on micro_shape: transfer)"
    chosen.standing = {le.entry.entry: "ranked" if le.entry.model.defense == "clip" or le.entry.eps_text == "4/255"
                       else reason for le in chosen.entries}
    fig, _ = plots.eps_figure(chosen)
    assert sorted(legend_texts(fig)) == ["clip", "comp_tga (unreliable: gradient masking at ε = 1/255)"]
    fig, _ = plots.tradeoff_figure(chosen, eps="1")
    assert sorted(t for t in legend_texts(fig) if t != "robust = clean") == \
        ["clip", "comp_tga (unreliable: gradient masking)"]
    comp = next(le for le in chosen.entries if le.entry.model.defense == "comp_tga" and le.entry.eps_text == "1/255")
    fig = plots.bars_figure([comp], chosen.standing)
    assert fig.axes[0].get_title().startswith(f"{comp.entry.model.name} (unreliable: gradient masking) · ")
    fig, _ = plots.eps_figure(chosen)  # fig_toy is micro's copy: a proxy, and its figures say so
    caption = " ".join(" ".join(t.get_text().split()) for t in fig.texts)
    assert chosen.proxy and f"{PROTOCOL} is {chosen.proxy}." in caption


def test_plot_bars_and_entry_bars(runs, tmp_path):
    from zsrbench.figures.plots import entry_bars
    from zsrbench.leaderboard.reading import load_store

    _, _, board = runs
    out = tmp_path / "bars.png"
    res = cli.invoke(app, ["plot", "bars", "comp_tga", "clip__zsr-micro", "--leaderboard-dir", str(board),
                           "--protocol", PROTOCOL, "--out", str(out)])
    assert res.exit_code != 0  # several entries match "comp_tga" (ε = 1 and 4): be specific
    assert "be more specific" in res.output.replace("\n", " ") and not out.exists()
    loaded = [le for le in load_store(board, PROTOCOL).entries if le.entry.eps_text == "4/255"]
    names = [le.entry.entry for le in loaded]
    res = cli.invoke(app, ["plot", "bars", *names, "--leaderboard-dir", str(board), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert_png(out)
    svg = entry_bars(loaded[0], tmp_path / "one.svg")
    assert svg == tmp_path / "one.svg"
    assert_svg(svg)
    assert_png(entry_bars(loaded[0], tmp_path / "one.png"))


@pytest.mark.parametrize("args, words", [
    (["eps", "--out", "FIG/eps.pdf"], ".pdf"),
    (["eps", "--protocol", "no_such_protocol", "--out", "FIG/eps.png"], "no_such_protocol"),
    (["tradeoff", "--attack", "cw", "--out", "FIG/t.png"], "--attack"),
    (["tradeoff", "--eps", "8", "--out", "FIG/t.png"], "--eps"),
    (["eps", "--subset", "quick", "--out", "FIG/eps.png"], "--subset"),
    (["eps", "--models", "fare", "--out", "FIG/eps.png"], "--models"),
    (["bars", "no_such_entry", "--out", "FIG/b.png"], "no_such_entry"),
    (["eps", "--format", "jpeg", "--out", "FIG/eps"], "--format"),
])
def test_plot_bad_input_exits_2_and_writes_nothing(runs, tmp_path, args, words):
    _, _, board = runs
    args = [a.replace("FIG", str(tmp_path / "fig")) for a in args]
    if "--protocol" not in args and args[0] != "bars":
        args += ["--protocol", PROTOCOL]
    before = sorted(files_under(board))
    res = cli.invoke(app, ["plot", *args, "--leaderboard-dir", str(board)], catch_exceptions=False)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and words in res.output.replace("\n", " ")
    assert files_under(tmp_path) == []
    assert sorted(files_under(board)) == before



@pytest.mark.parametrize("command", [["eps"], ["tradeoff"], ["bars", "clip"]])
@pytest.mark.parametrize("kind", ["name", "path"])
def test_plot_out_longer_than_the_filesystem_allows_is_refused(tmp_path, command, kind):
    """A 300-character folder name, or a whole path over PATH_MAX: exit 2 before anything is read or drawn."""
    folder = tmp_path / ("x" * 300) if kind == "name" else tmp_path.joinpath(*["y" * 200] * 25)
    res = cli.invoke(app, ["plot", *command, "--out", str(folder / "fig.png"), "--leaderboard-dir",
                           str(tmp_path / "lb")])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert isinstance(res.exception, SystemExit) and "too long" in " ".join(res.output.split())
    assert files_under(tmp_path) == []
