from zsrbench.bench import run_benchmark


def test_bench_measures_runner_reference_and_peak():
    r = run_benchmark(n_images=8, batch_size=4, steps=1, repeats=1)
    assert r.runner_images_per_s > 0 and r.reference_images_per_s > 0
    assert abs(r.speedup_vs_reference - r.runner_images_per_s / r.reference_images_per_s) < 1e-9
    assert r.model_gflop_per_image_step > 0 and r.peak_tflops_fp32 > 0
    assert 0 < r.fraction_of_fp32_peak
