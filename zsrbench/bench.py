"""Throughput of the evaluation runner, side by side with a plain reference loop and the hardware's peak.

One call measures, on the same model, data and attack:
- ``runner``: :func:`zsrbench.runner.evaluate_dataset` (what `zsrbench run` does per dataset);
- ``reference``: the plainest correct loop: for each batch, clean forward, then PGD steps on every sample;
- ``peak``: the device's dense matmul rate (measured here, fp32 and, on GPU, bf16), and the fraction of it
  that the runner's attack achieves, from the model's counted FLOPs per forward+backward.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from zsrbench.attacks.pgd import project, random_start
from zsrbench.data.base import DatasetInfo, EvalSet, TensorImageDataset
from zsrbench.models import build_clip, make_classifier
from zsrbench.registry import ATTACKS, load_builtins


@dataclass
class BenchResult:
    device: str
    model: str
    n_images: int
    batch_size: int
    steps: int
    repeats: int
    runner_images_per_s: float
    reference_images_per_s: float
    speedup_vs_reference: float
    model_gflop_per_image_step: float
    achieved_tflops: float
    peak_tflops_fp32: float
    peak_tflops_bf16: float | None
    fraction_of_fp32_peak: float


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak_tflops(device: str, dtype: torch.dtype, n: int = 4096, reps: int = 20) -> float:
    """Measured dense matmul rate of the device (TFLOP/s)."""
    if device == "cpu":
        n, reps = 1024, 5
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def flops_per_image_step(clf: torch.nn.Module, image: torch.Tensor) -> float:
    """FLOPs of one forward + backward w.r.t. the input, per image (counted by torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = image.clone().requires_grad_(True)
    flags = [p.requires_grad for p in clf.parameters()]
    for p in clf.parameters():  # as in the attack: gradients w.r.t. the input only
        p.requires_grad_(False)
    try:
        with FlopCounterMode(display=False) as counter:
            clf(x).logsumexp(1).sum().backward()
    finally:
        for p, f in zip(clf.parameters(), flags):
            p.requires_grad_(f)
    return counter.get_total_flops() / image.shape[0]


def reference_loop(clf, x_all, y_all, *, eps: float, step: float, steps: int, batch_size: int, seed: int) -> float:
    """Plain PGD over all samples, batch by batch: returns seconds."""
    device = x_all.device
    gen = torch.Generator(device=device).manual_seed(seed)
    _sync(str(device))
    t = time.perf_counter()
    for i in range(0, x_all.shape[0], batch_size):
        x, y = x_all[i:i + batch_size], y_all[i:i + batch_size]
        with torch.no_grad():
            clf(x).argmax(1)
        xa = random_start(x, eps, gen)
        for _ in range(steps):
            xa.requires_grad_(True)
            loss = F.cross_entropy(clf(xa), y)
            (g,) = torch.autograd.grad(loss, xa)
            xa = project(xa.detach() + step * g.sign(), x, eps)
        with torch.no_grad():
            clf(xa).argmax(1)
    _sync(str(device))
    return time.perf_counter() - t


def run_benchmark(*, model: str = "zsr-tiny", pretrained: str | None = None, device: str = "cpu", n_images: int = 256,
                  batch_size: int = 64, steps: int = 10, image_size: int | None = None, num_classes: int = 10,
                  seed: int = 0, repeats: int = 3) -> BenchResult:
    load_builtins()
    torch.manual_seed(seed)
    parts = build_clip(model, pretrained, device=device)
    size = image_size or parts.image_size
    prompts = [[f"a photo of a class {i}"] for i in range(num_classes)]
    clf, _ = make_classifier(parts, prompts, device=device, cache=False)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_images, 3, size, size, generator=g)
    with torch.no_grad():  # label each image with the model's own prediction: every sample gets attacked
        y = torch.cat([clf(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, n_images, batch_size)])
    info = DatasetInfo(name="bench", title="bench", classnames=tuple(str(i) for i in range(num_classes)),
                       input_mode="native", native_size=size)
    evalset = EvalSet(info=info, dataset=TensorImageDataset(x, y))
    eps = 1 / 255
    spec = ATTACKS.get("pgd")
    params = {"pgd": spec.config(steps=steps, step=1.0)}
    from zsrbench.runner import evaluate_dataset

    # warm-up both paths once on a small slice (allocator, kernels)
    reference_loop(clf, x[:batch_size].to(device), y[:batch_size].to(device), eps=eps, step=eps, steps=1,
                   batch_size=batch_size, seed=seed)
    runner_s = ref_s = float("inf")
    for _ in range(repeats):  # interleaved, best of `repeats`: both paths see the same machine state
        _sync(device)
        t = time.perf_counter()
        evaluate_dataset(clf, evalset, list(range(n_images)), [spec], params, eps=1.0, seed=seed,
                         batch_size=batch_size, device=device, precision="fp32")
        _sync(device)
        runner_s = min(runner_s, time.perf_counter() - t)
        ref_s = min(ref_s, reference_loop(clf, x.to(device), y.to(device), eps=eps, step=eps, steps=steps,
                                          batch_size=batch_size, seed=seed))
    flops = flops_per_image_step(clf, x[:2].to(device))
    # forward+backward per step, plus clean and final forwards (~1/3 of a step each)
    total_flops = flops * n_images * (steps + 2 / 3)
    peak32 = matmul_peak_tflops(device, torch.float32)
    peak16 = matmul_peak_tflops(device, torch.bfloat16) if device.startswith("cuda") else None
    achieved = total_flops / runner_s / 1e12
    return BenchResult(
        device=device if device == "cpu" else f"{device} ({torch.cuda.get_device_name()})", model=parts.name,
        n_images=n_images, batch_size=batch_size, steps=steps, repeats=repeats, runner_images_per_s=n_images / runner_s,
        reference_images_per_s=n_images / ref_s, speedup_vs_reference=ref_s / runner_s,
        model_gflop_per_image_step=flops / 1e9, achieved_tflops=achieved, peak_tflops_fp32=peak32,
        peak_tflops_bf16=peak16, fraction_of_fp32_peak=achieved / peak32,
    )


def as_dict(result: BenchResult) -> dict[str, Any]:
    return asdict(result)
