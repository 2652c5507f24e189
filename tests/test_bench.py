import json

import pytest

from zsrbench.evaluation.bench import run_benchmark
from zsrbench.errors import ZsrError


def test_bench_runner_beside_the_papers_structure_on_the_micro_clip():
    r = run_benchmark(defense="clip", protocol="micro", n_images=8, batch_size=4, steps=10, eps=1, step=1)
    assert r.data == "micro_shape (micro)" and r.model == "clip/zsr-micro"
    assert r.flags_identical and r.flags_differing == 0 and r.robust_accuracy_runner == r.robust_accuracy_papers
    assert r.papers_attack_passes == 8 * 10
    assert r.runner_attack_passes < r.papers_attack_passes  # clean errors skipped, cycling samples stopped
    assert r.runner_images_per_s > 0 and r.papers_images_per_s > 0
    assert abs(r.speedup_vs_papers - r.runner_images_per_s / r.papers_images_per_s) < 1e-9
    assert r.model_gflop_per_image_step > 0 and r.peaks_tflops["fp32"] == r.peak_tflops > 0
    assert 0 < r.runner_fraction_of_peak and 0 < r.papers_fraction_of_peak


def test_bench_on_a_bare_architecture():
    r = run_benchmark(model="zsr-tiny", n_images=6, batch_size=3, steps=2)
    assert r.clean_accuracy == 1.0  # labelled with its own predictions: every sample attacked by both paths
    assert r.flags_identical and r.papers_attack_passes == 12 and r.runner_attack_passes <= 12


def test_bench_command_prints_and_writes_json(tmp_path):
    from typer.testing import CliRunner

    from zsrbench.cli import app

    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "--model", "zsr-tiny", "--n-images", "4", "--batch-size", "2",
                                   "--steps", "1", "--device", "cpu", "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.output)
    assert printed == json.loads(out.read_text()) and printed["steps"] == 1 and printed["flags_identical"]


@pytest.mark.parametrize("bad", [dict(precision="fp64"), dict(steps=0), dict(eps=0), dict(step=-1)])
def test_bench_refuses_bad_settings(bad):
    with pytest.raises(ZsrError):
        run_benchmark(model="zsr-tiny", n_images=2, **bad)


def test_bench_autoattack_runner_papers_and_floor_per_stage(tmp_path):
    """`zsrbench bench --suite autoattack`: the runner and the papers' structure give the same flags; every stage
    AutoAttack ran has its passes, FLOPs and time; the floor is the stages' FLOPs at the measured peak."""
    import json

    from typer.testing import CliRunner

    from zsrbench.cli import app

    out = tmp_path / "aa.json"
    res = CliRunner().invoke(app, ["bench", "--suite", "autoattack", "--model", "zsr-tiny", "--n-images", "3",
                                   "--n-queries", "5", "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["flags_identical"] and r["n_images"] == 3 and r["eps"] == 1.0
    stages = {s["stage"]: s for s in r["stages"]}
    assert {"clean", "apgd-ce"} <= set(stages)
    assert stages["apgd-ce"]["gradient_images"] > 0 and stages["clean"]["gradient_images"] == 0
    assert r["gflop_forward_gradient"] > r["gflop_forward"] > 0
    assert abs(r["total_gflop"] - sum(s["gflop"] for s in r["stages"])) < 1e-6
    assert abs(r["floor_s"] - r["total_gflop"] / r["peak_gflops"]) < 1e-9
    assert "runner at" in res.output


def test_bench_refuses_an_unknown_suite():
    from typer.testing import CliRunner

    from zsrbench.cli import app

    res = CliRunner().invoke(app, ["bench", "--suite", "square"])
    assert res.exit_code == 2 and "pgd or autoattack" in res.output
