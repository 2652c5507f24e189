"""Throughput of the evaluation runner beside the structure of the papers' evaluation code, and the hardware peak.

One call measures, on the same model, data and attack (PGD, last iterate judged):

- ``runner``: :func:`zsrbench.evaluation.unit.evaluate_dataset`, what `zsrbench run` does per dataset: the class texts
  encoded once, only clean-correct samples attacked, each sample's attack stopped early once its iterates cycle;
- ``papers``: the structure of the papers' evaluation code, as a plain loop (:func:`papers_loop`): for every batch
  the class texts encoded again, a clean pass, then every sample attacked for every step (no early exit, no
  skipping of misclassified samples), the last iterate judged;
- ``peak``: the device's dense matmul rate, and the fraction of it each path achieves, from the FLOPs counted by
  torch's FlopCounterMode (a forward+backward per attacked sample and step, a forward per clean or final pass;
  the text encodings are left out).

Both paths compute the same attack: the papers' loop uses the runner's random starts (the runner seeds each
batch and draws for its clean-correct rows, the rows it attacks), so their per-sample robust flags must agree
(a sample is robust when its last iterate is classified correctly; the runner counts clean errors as not robust).
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from zsrbench.attacks.pgd import project, random_start
from zsrbench.data.base import DatasetInfo, EvalSet, TensorImageDataset, select_indices
from zsrbench.errors import ZsrError
from zsrbench.models.clip import CLIPParts, build_clip
from zsrbench.models.classifier import make_classifier
from zsrbench.registry import ATTACKS, DATASETS, PROTOCOLS, load_builtins

BENCH_PRECISIONS = ("fp32", "tf32", "bf16", "fp16")  # tf32: fp32 with TF32 matmuls/convolutions (CUDA), set here


@dataclass
class BenchResult:
    device: str
    model: str
    data: str
    precision: str
    n_images: int
    batch_size: int
    steps: int
    eps: float  # units of 1/255
    step: float
    repeats: int
    clean_accuracy: float
    robust_accuracy_runner: float
    robust_accuracy_papers: float
    flags_identical: bool
    flags_differing: int
    runner_images_per_s: float
    papers_images_per_s: float
    speedup_vs_papers: float  # papers' seconds / runner's seconds
    runner_attack_passes: int  # forward+backward passes of the attack (images × steps)
    papers_attack_passes: int
    model_gflop_per_image_step: float  # one forward + backward w.r.t. the input
    runner_achieved_tflops: float
    papers_achieved_tflops: float
    peak_tflops: float  # the matmul peak of the measured precision
    runner_fraction_of_peak: float
    papers_fraction_of_peak: float
    peaks_tflops: dict[str, float] = field(default_factory=dict)  # every peak measured (fp32, tf32, bf16, ...)
    notes: list[str] = field(default_factory=list)


@dataclass
class Setup:
    """What both paths evaluate: the model, what wraps its classifier (the defense), the class prompts, data."""

    parts: CLIPParts
    wrap: Callable[[torch.nn.Module], torch.nn.Module]
    prompts: list[list[str]]
    evalset: EvalSet
    indices: list[int]
    label: str
    data: str


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 matmuls and convolutions on (CUDA) for the block, restored after."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


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


def measure_peaks(device: str, precision: str) -> dict[str, float]:
    """The matmul peaks worth knowing here: fp32 always; on CUDA tf32 and bf16 too; and the measured precision's."""
    kinds = {"fp32", precision} | ({"tf32", "bf16"} if device.startswith("cuda") else set())
    if not device.startswith("cuda"):
        kinds.discard("tf32")  # TF32 is a CUDA mode: on the CPU "tf32" runs in fp32
    dtypes = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    out = {}
    for kind in sorted(kinds):
        with tf32(kind == "tf32"):
            out[kind] = matmul_peak_tflops(device, dtypes[kind])
    return out


def counted_flops(clf: torch.nn.Module, images: torch.Tensor, backward: bool) -> float:
    """FLOPs per image of one forward (and, with ``backward``, the backward w.r.t. the input), as the attack runs
    them (parameters frozen), counted by torch's FlopCounterMode. The pass runs once before it is counted, so the
    model's once-per-shape checks (the exact speed-ups' probes) are not counted as the model's work."""
    from torch.utils.flop_counter import FlopCounterMode

    flags = [p.requires_grad for p in clf.parameters()]
    for p in clf.parameters():
        p.requires_grad_(False)
    try:
        for counting in (False, True):
            x = images.clone().requires_grad_(backward)
            with (FlopCounterMode(display=False) if counting else nullcontext()) as counter, \
                    torch.set_grad_enabled(backward):
                out = clf(x).logsumexp(1).sum()
                if backward:
                    out.backward()
    finally:
        for p, f in zip(clf.parameters(), flags):
            p.requires_grad_(f)
    return counter.get_total_flops() / images.shape[0]


# --- the two paths --------------------------------------------------------------------------------------------


def _classifier(setup: Setup, device: str) -> torch.nn.Module:
    """The classifier attacks see, its class texts encoded now (no cache)."""
    return setup.wrap(make_classifier(setup.parts, setup.prompts, device=device, cache=False)[0])


def _counting(spec: Any, counts: dict[str, int]) -> Any:
    """``spec`` (same name, hence same seeds) whose calls add their attack passes and attacked images to ``counts``."""
    def fn(*args: Any, **kw: Any) -> Any:
        out = spec.fn(*args, **kw)
        counts["passes"] += int(out.info.get("passes_run", 0))
        counts["attacked"] += int(out.x_adv.shape[0])
        return out

    return replace(spec, fn=fn)


def runner_path(setup: Setup, *, eps: float, step: float, steps: int, batch_size: int, seed: int, device: str,
                precision: str) -> tuple[float, dict[str, np.ndarray], dict[str, int]]:
    """(seconds, the runner's flags, its counted passes) for :func:`zsrbench.evaluation.unit.evaluate_dataset`, the class
    texts encoded once (timed too)."""
    from zsrbench.evaluation.unit import evaluate_dataset

    counts = {"passes": 0, "attacked": 0}
    spec = _counting(ATTACKS.get("pgd"), counts)
    params = {"pgd": spec.config(steps=steps, step=step)}
    _sync(device)
    t = time.perf_counter()
    clf = _classifier(setup, device)
    flags, _, _ = evaluate_dataset(clf, setup.evalset, setup.indices, [spec], params, eps=eps, seed=seed,
                                   batch_size=batch_size, device=device, precision=precision)
    _sync(device)
    return time.perf_counter() - t, flags, counts


def autocast_for(device: str, precision: str):
    """The runner's autocast: off in fp32, bf16 or fp16 otherwise."""
    if precision == "fp32":
        return torch.autocast(device_type=device.split(":")[0], enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def _batch_seed(seed: int, attack: str, start: int) -> int:
    """The runner's attack seed of the batch that starts at position ``start``."""
    try:
        from zsrbench.evaluation.unit import batch_seed
    except ImportError:  # the runner before its evaluation loop moved to zsrbench.evaluation.unit
        from zsrbench.evaluation.unit import batch_seed
    return batch_seed(seed, attack, start)


def _runner_starts(x: torch.Tensor, correct: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    """The runner's random starts: its batch seed, drawn first for the clean-correct rows (those it attacks)."""
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    xa = torch.empty_like(x)
    xa[correct] = random_start(x[correct], eps, gen)
    xa[~correct] = random_start(x[~correct], eps, gen)
    return xa


def papers_loop(setup: Setup, x_all: torch.Tensor, y_all: torch.Tensor, *, eps: float, step: float, steps: int,
                batch_size: int, seed: int, device: str, precision: str) -> tuple[float, np.ndarray]:
    """(seconds, per-sample robust flags) of the papers' evaluation structure (sizes in units of 1/255)."""
    eps_px, step_px = eps / 255.0, step / 255.0  # as the attack spec converts them
    robust = []
    _sync(device)
    t = time.perf_counter()
    for start in range(0, x_all.shape[0], batch_size):
        x, y = x_all[start:start + batch_size], y_all[start:start + batch_size]
        clf = _classifier(setup, device)  # the class texts encoded again for every batch
        with torch.no_grad(), autocast_for(device, precision):
            clean = clf(x).argmax(1)
        xa = _runner_starts(x, clean == y, eps_px, _batch_seed(seed, "pgd", start))
        for _ in range(steps):  # every sample, every step
            xa.requires_grad_(True)
            with torch.enable_grad(), autocast_for(device, precision):
                loss = F.cross_entropy(clf(xa), y, reduction="sum")  # the mean's sign, without its rounding
            (g,) = torch.autograd.grad(loss, xa)
            xa = project(xa.detach() + step_px * g.sign(), x, eps_px)
        with torch.no_grad(), autocast_for(device, precision):  # the last iterate judged
            robust.append((clf(xa).argmax(1) == y).cpu())
    _sync(device)
    return time.perf_counter() - t, torch.cat(robust).numpy()


# --- what is measured -----------------------------------------------------------------------------------------


def setup_defense(defense: str, protocol: str, *, dataset: str | None, model: str | None, pretrained: str | None,
                  data_root: str | None, device: str, seed: int, n_images: int) -> Setup:
    """A defense's model as `zsrbench run` loads it (fine-tuned on demand and cached where the protocol allows),
    on ``n_images`` seeded samples of one of the protocol's datasets (default: its first)."""
    from zsrbench.evaluation.config import RunConfig
    from zsrbench.evaluation.model import prepare_model

    load_builtins()
    proto = PROTOCOLS.get(protocol)
    d, parts, _ = prepare_model(RunConfig(defense=defense, protocol=protocol, model=model, pretrained=pretrained),
                                proto, device=device, seed=seed)
    name = dataset or proto.datasets[0]
    evalset = DATASETS.get(name).build(data_root, image_size=parts.image_size)
    return Setup(parts=parts, wrap=d.wrap_classifier, prompts=evalset.info.prompts(), evalset=evalset,
                 indices=select_indices(len(evalset), n_images, seed), label=f"{d.name}/{parts.base_name()}",
                 data=f"{name} ({protocol})")


def setup_model(model: str, pretrained: str | None, *, device: str, seed: int, n_images: int,
                image_size: int | None, num_classes: int, batch_size: int) -> Setup:
    """A bare architecture on uniform random images, each labelled with the model's own prediction (so every
    sample is clean-correct and attacked by both paths)."""
    load_builtins()
    torch.manual_seed(seed)
    parts = build_clip(model, pretrained, device=device)
    size = image_size or parts.image_size
    prompts = [[f"a photo of a class {i}"] for i in range(num_classes)]
    clf, _ = make_classifier(parts, prompts, device=device, cache=False)
    x = torch.rand(n_images, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = torch.cat([clf(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, n_images, batch_size)])
    info = DatasetInfo(name="bench", title="bench", classnames=tuple(str(i) for i in range(num_classes)),
                       input_mode="native", native_size=size)
    evalset = EvalSet(info=info, dataset=TensorImageDataset(x, y))
    return Setup(parts=parts, wrap=lambda c: c, prompts=prompts, evalset=evalset, indices=list(range(n_images)),
                 label=f"{parts.name} (pretrained: {pretrained or 'none, random weights'})",
                 data=f"{n_images} random {size}px images, labels = own predictions")


def check_settings(*, n_images: int, batch_size: int, steps: int, eps: float, step: float, repeats: int,
                   precision: str) -> None:
    from zsrbench.attacks.base import validate_eps

    if precision not in BENCH_PRECISIONS:
        raise ZsrError(f"Unknown precision '{precision}'; use one of {', '.join(BENCH_PRECISIONS)}.")
    for flag, value in (("--n-images", n_images), ("--batch-size", batch_size), ("--steps", steps),
                        ("--repeats", repeats)):
        if value < 1:
            raise ZsrError(f"{flag} must be at least 1; got {value}.")
    validate_eps(eps)
    if not step > 0:
        raise ZsrError(f"--step must be positive; got {step}.")


def run_benchmark(*, defense: str | None = None, protocol: str | None = None, dataset: str | None = None,
                  model: str | None = None, pretrained: str | None = None, data_root: str | None = None,
                  device: str = "cpu", n_images: int = 128, batch_size: int | None = None, steps: int = 100,
                  eps: float = 1.0, step: float = 1.0, precision: str = "fp32", image_size: int | None = None,
                  num_classes: int = 10, seed: int = 0, repeats: int = 1) -> BenchResult:
    """Measure both paths on the same model and data (see the module docstring); sizes in units of 1/255.

    With ``defense`` or ``protocol`` (or neither, nor ``model``: the micro CLIP, defense ``clip``) the defense's
    model on a protocol dataset; with only ``model``, that architecture on random images.
    """
    load_builtins()
    if defense is not None or protocol is not None or model is None:
        protocol = protocol or "micro"
        bs = batch_size or PROTOCOLS.get(protocol).batch_size
        check_settings(n_images=n_images, batch_size=bs, steps=steps, eps=eps, step=step, repeats=repeats,
                       precision=precision)
        setup = setup_defense(defense or "clip", protocol, dataset=dataset, model=model, pretrained=pretrained,
                              data_root=data_root, device=device, seed=seed, n_images=n_images)
    else:
        bs = batch_size or 64
        check_settings(n_images=n_images, batch_size=bs, steps=steps, eps=eps, step=step, repeats=repeats,
                       precision=precision)
        setup = setup_model(model, pretrained, device=device, seed=seed, n_images=n_images, image_size=image_size,
                            num_classes=num_classes, batch_size=bs)
    with tf32(precision == "tf32"):
        return _measure(setup, eps=eps, step=step, steps=steps, batch_size=bs, seed=seed, device=device,
                        precision=precision, repeats=repeats)


def _measure(setup: Setup, *, eps: float, step: float, steps: int, batch_size: int, seed: int, device: str,
             precision: str, repeats: int) -> BenchResult:
    amp = "fp32" if precision == "tf32" else precision  # the runner's own precisions; tf32 is set around it
    kw = dict(eps=eps, step=step, batch_size=batch_size, seed=seed, device=device, precision=amp)
    x_all = torch.stack([setup.evalset.dataset[i][0] for i in setup.indices]).to(device).float().contiguous()
    y_all = torch.tensor([int(setup.evalset.dataset[i][1]) for i in setup.indices], device=device)
    warm = replace(setup, indices=setup.indices[:batch_size])  # allocator, kernels, autotuning
    runner_path(warm, steps=1, **kw)
    papers_loop(setup, x_all[:batch_size], y_all[:batch_size], steps=1, **kw)
    runner_s = papers_s = float("inf")
    for _ in range(repeats):  # interleaved, best of `repeats`: both paths see the same machine state
        t, flags, counts = runner_path(setup, steps=steps, **kw)
        runner_s = min(runner_s, t)
        t, papers_robust = papers_loop(setup, x_all, y_all, steps=steps, **kw)
        papers_s = min(papers_s, t)
    n = len(setup.indices)
    clf = _classifier(setup, device)
    fb = counted_flops(clf, x_all[:2], backward=True)
    fwd = counted_flops(clf, x_all[:2], backward=False)
    papers_passes = n * steps
    runner_flops = counts["passes"] * fb + (n + 2 * counts["attacked"]) * fwd  # clean, final and finiteness passes
    papers_flops = papers_passes * fb + 2 * n * fwd  # clean and final passes
    peaks = measure_peaks(device, precision)
    peak = peaks[precision if precision in peaks else "fp32"]
    runner_tf, papers_tf = runner_flops / runner_s / 1e12, papers_flops / papers_s / 1e12
    differ = int((flags["robust"] != papers_robust).sum())
    return BenchResult(
        device=device if device == "cpu" else f"{device} ({torch.cuda.get_device_name()})",
        model=setup.label, data=setup.data, precision=precision, n_images=n, batch_size=batch_size, steps=steps,
        eps=eps, step=step, repeats=repeats, clean_accuracy=float(flags["clean_correct"].mean()),
        robust_accuracy_runner=float(flags["robust"].mean()), robust_accuracy_papers=float(papers_robust.mean()),
        flags_identical=differ == 0, flags_differing=differ, runner_images_per_s=n / runner_s,
        papers_images_per_s=n / papers_s, speedup_vs_papers=papers_s / runner_s,
        runner_attack_passes=counts["passes"], papers_attack_passes=papers_passes,
        model_gflop_per_image_step=fb / 1e9, runner_achieved_tflops=runner_tf, papers_achieved_tflops=papers_tf,
        peak_tflops=peak, runner_fraction_of_peak=runner_tf / peak, papers_fraction_of_peak=papers_tf / peak,
        peaks_tflops=peaks, notes=_notes(device, precision, torch.get_num_threads()),
    )


def _notes(device: str, precision: str, threads: int) -> list[str]:
    notes = [f"torch {torch.__version__}, {threads} CPU thread(s)"]
    if precision == "tf32":
        notes.append("tf32: the runner's fp32 with torch.backends.cuda.matmul.allow_tf32 and cudnn.allow_tf32 set "
                     "by the benchmark" + ("" if device.startswith("cuda") else " (no effect on the CPU)"))
    elif device.startswith("cuda"):
        notes.append(f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32}")
    return notes


def as_dict(result: BenchResult) -> dict[str, Any]:
    return asdict(result)
