"""Standard AutoAttack measured three ways on the same images (``zsrbench bench --suite autoattack``).

- ``runner``: what `zsrbench run` does (:func:`zsrbench.evaluation.unit.evaluate_dataset`), dataset after dataset in
  this process: the class texts encoded once per dataset, a clean pass, the official AutoAttack on the clean-correct
  samples of each unit, with zsrbench's exact speed-ups (e.g. the patch embedding's input gradient as a matmul);
- ``papers``: the official AutoAttack called the way the papers' evaluation code calls it: one dataset at a time,
  batch by batch, the class texts encoded again for every batch, ``run_standard_evaluation`` on the whole batch,
  plain open_clip modules. It is given the runner's attack seed of each batch, so both must give the same flags;
- ``floor``: the FLOPs the runner's passes need (counted per stage: forward passes, and forward passes followed by
  an input gradient), at the measured fp32 matmul peak of the same threads.

Each AutoAttack stage (its clean check, APGD-CE, APGD-T, FAB-T, Square) is timed from AutoAttack's own log, in wall
and CPU seconds; time outside the stages (the runner's clean pass, data, finiteness checks) is ``other``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from zsrbench.attacks.autoattack_log import listening, stage_event
from zsrbench.evaluation.bench import _sync, autocast_for, counted_flops, measure_peaks, setup_model, tf32
from zsrbench.registry import ATTACKS, DATASETS, PROTOCOLS, load_builtins

SUITE = "autoattack"


@dataclass
class StageWork:
    stage: str
    wall_s: float
    cpu_s: float
    forward_images: int  # images of passes without a gradient
    gradient_images: int  # images of passes followed by an input gradient
    gflop: float
    gflop_per_s: float  # per CPU second on a CPU, per wall second on a GPU
    fraction_of_peak: float  # gflop_per_s / the matmul peak (one thread's on a CPU)


@dataclass
class AutoAttackBench:
    device: str
    model: str
    datasets: list[str]
    n_images: int
    batch_size: int
    eps: float  # units of 1/255
    precision: str
    attack_params: dict[str, Any]
    threads: int
    runner_wall_s: float
    runner_cpu_s: float
    papers_wall_s: float
    papers_cpu_s: float
    speedup_vs_papers: float  # papers' CPU seconds / the runner's
    flags_identical: bool
    flags_differing: int
    robust_accuracy: float
    runner_images_per_s: float
    papers_images_per_s: float
    gflop_forward: float  # per image: one forward pass (attention included)
    gflop_forward_gradient: float  # per image: a forward pass and the input gradient
    total_gflop: float
    peak_gflops: float  # the measured matmul peak of the precision: per thread on a CPU, the device's on a GPU
    floor_s: float  # total_gflop at the peak (CPU seconds on a CPU, seconds on a GPU)
    runner_fraction_of_peak: float  # floor_s / the runner's CPU seconds (CPU) or wall seconds (GPU)
    papers_fraction_of_peak: float
    stages: list[StageWork] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class StageCounter(nn.Module):
    """A classifier as AutoAttack sees it, unchanged, counting the images of its passes and the wall and CPU
    seconds per stage (the stage follows AutoAttack's log: :meth:`message`)."""

    def __init__(self, clf: nn.Module) -> None:
        super().__init__()
        self.clf = clf
        self.stage = "other"
        self.forward_images: Counter[str] = Counter()
        self.gradient_images: Counter[str] = Counter()
        self.wall: Counter[str] = Counter()
        self.cpu: Counter[str] = Counter()
        self._since = (time.perf_counter(), time.process_time())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        graph = torch.is_grad_enabled() and x.requires_grad
        (self.gradient_images if graph else self.forward_images)[self.stage] += int(x.shape[0])
        return self.clf(x)

    def message(self, message: str) -> None:
        event = stage_event(message)
        if event is not None:
            self.switch(event.stage if event.kind == "start" else "other")

    def switch(self, stage: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall[self.stage] += now[0] - self._since[0]
        self.cpu[self.stage] += now[1] - self._since[1]
        self.stage, self._since = stage, now


def attention_gflop(visual: nn.Module, backward: bool) -> float:
    """GFLOP per image of a ViT's attention products (``QKᵀ`` and ``AV``), which torch's FLOP counter misses when
    they run in the CPU flash kernel: 4·T²·W per layer forward, three times that with the input gradient."""
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    grid = getattr(visual, "grid_size", None)
    if blocks is None or grid is None:
        return 0.0
    tokens = int(grid[0]) * int(grid[1]) + 1
    width = int(visual.transformer.width)
    return len(blocks) * 4 * tokens**2 * width * (3 if backward else 1) / 1e9


def model_gflop(clf: nn.Module, visual: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(forward, forward + input gradient) GFLOP per image, attention included."""
    fwd = counted_flops(clf, x, backward=False) / 1e9 + attention_gflop(visual, False)
    fb = counted_flops(clf, x, backward=True) / 1e9 + attention_gflop(visual, True)
    return fwd, fb


@dataclass
class Workload:
    """What both paths attack: the model, the defense's wrapper, the datasets (name, evalset, indices, prompts)."""

    label: str
    parts: Any
    wrap: Any
    sets: list[tuple[str, Any, list[int], list[list[str]]]]
    params: dict[str, dict[str, Any]]
    eps: float
    batch_size: int


def _classifier(work: Workload, prompts: list[list[str]], device: str, plain: bool) -> nn.Module:
    """The classifier attacks see (texts encoded now); ``plain``: open_clip's own patch embedding and attention and
    eager gradient-free passes, as the papers' code runs them."""
    from zsrbench.models.classifier import make_classifier
    from zsrbench.models.mha import plain_attention
    from zsrbench.models.patch_embed import plain_patch_embedding
    from zsrbench.models.traced import plain_inference

    clf, _ = make_classifier(work.parts, prompts, device=device, cache=False)
    if plain:
        plain_patch_embedding(clf.visual)
        plain_attention(clf.visual)
        plain_inference(clf)
    return work.wrap(clf)


def runner_path(work: Workload, counter: StageCounter, *, seed: int, device: str,
                precision: str) -> dict[str, np.ndarray]:
    """The runner's robust flags per dataset; its passes and stage times go to ``counter``."""
    from zsrbench.evaluation.unit import evaluate_dataset

    spec = ATTACKS.get(SUITE)
    out = {}
    with listening(counter.message):
        for name, evalset, indices, prompts in work.sets:
            counter.clf = _classifier(work, prompts, device, plain=False)
            flags, _, _ = evaluate_dataset(counter, evalset, indices, [spec], work.params, eps=work.eps, seed=seed,
                                           batch_size=work.batch_size, device=device, precision=precision)
            out[name] = flags["robust"]
    counter.switch("other")
    return out


def papers_path(work: Workload, *, seed: int, device: str, precision: str) -> dict[str, np.ndarray]:
    """Robust flags per dataset of the official AutoAttack called batch by batch on whole batches, the class texts
    encoded again for every batch, plain open_clip modules; each batch given the runner's attack seed."""
    from zsrbench.attacks.autoattack_log import captured_autoattack_log
    from zsrbench.attacks.autoattack_official import configure
    from zsrbench.attacks.autoattack_plan import PROTOCOL_ATTACKS, plan_attacks
    from zsrbench.evaluation.unit import batch_seed

    p, bs = work.params[SUITE], work.batch_size
    out = {}
    for name, evalset, indices, prompts in work.sets:
        x_all = torch.stack([evalset.dataset[i][0] for i in indices]).to(device).float().contiguous()
        y_all = torch.tensor([int(evalset.dataset[i][1]) for i in indices], device=device)
        robust = []
        for start in range(0, len(indices), bs):
            x, y = x_all[start:start + bs], y_all[start:start + bs]
            clf = _classifier(work, prompts, device, plain=True)
            plan = plan_attacks(PROTOCOL_ATTACKS[SUITE], len(prompts), p.get("n_target_classes", 9))
            aa = configure(clf, SUITE, plan, eps=work.eps / 255.0, seed=batch_seed(seed, SUITE, start),
                           device=torch.device(device), n_iter=p.get("n_iter", 100),
                           n_restarts=p.get("n_restarts", 1), n_queries=p.get("n_queries", 5000))
            with captured_autoattack_log(), autocast_for(device, precision):
                x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=bs)
            with torch.no_grad(), autocast_for(device, precision):
                robust.append((clf(x_adv).argmax(1) == y).cpu())
        out[name] = torch.cat(robust).numpy()
    return out


def _timed(fn: Any, *args: Any, device: str, **kw: Any) -> tuple[Any, float, float]:
    """(``fn``'s result, wall seconds, CPU seconds), the device synchronised around it."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, device=device, **kw)
    _sync(device)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def protocol_workload(defense: str, protocol: str, datasets: list[str] | None, *, n_images: int,
                      batch_size: int | None, eps: float | None, seed: int, device: str,
                      n_queries: int | None) -> Workload:
    """A defense's model as `zsrbench run` loads it, on ``n_images`` seeded samples of each dataset."""
    from zsrbench.data.base import select_indices
    from zsrbench.evaluation.config import RunConfig
    from zsrbench.evaluation.model import prepare_model
    from zsrbench.evaluation.params import attack_params

    proto = PROTOCOLS.get(protocol)
    d, parts, _ = prepare_model(RunConfig(defense=defense, protocol=protocol), proto, device=device, seed=seed)
    sets = []
    for name in datasets or list(proto.datasets):
        evalset = DATASETS.get(name).build(None, image_size=parts.image_size)
        sets.append((name, evalset, list(select_indices(len(evalset), n_images, seed)), evalset.info.prompts()))
    given = {} if n_queries is None else {f"{SUITE}.n_queries": int(n_queries)}
    params = attack_params((SUITE,), given, proto, [ATTACKS.get(SUITE)])
    return Workload(label=f"{d.name}/{parts.base_name()}", parts=parts, wrap=d.wrap_classifier, sets=sets,
                    params=params, eps=proto.eps if eps is None else eps, batch_size=batch_size or proto.batch_size)


def model_workload(model: str, pretrained: str | None, *, n_images: int, batch_size: int | None, eps: float | None,
                   seed: int, device: str, n_queries: int | None, image_size: int | None,
                   num_classes: int) -> Workload:
    """A bare architecture on uniform random images labelled with its own predictions (every one attacked)."""
    bs = batch_size or 64
    setup = setup_model(model, pretrained, device=device, seed=seed, n_images=n_images, image_size=image_size,
                        num_classes=num_classes, batch_size=bs)
    spec = ATTACKS.get(SUITE)
    params = {SUITE: spec.config(**({} if n_queries is None else {"n_queries": int(n_queries)}))}
    return Workload(label=setup.label, parts=setup.parts, wrap=setup.wrap,
                    sets=[("random", setup.evalset, setup.indices, setup.prompts)], params=params,
                    eps=1.0 if eps is None else eps, batch_size=bs)


def run_autoattack_bench(*, defense: str | None = None, protocol: str | None = None,
                         datasets: list[str] | None = None, model: str | None = None, pretrained: str | None = None,
                         image_size: int | None = None, num_classes: int = 10, n_images: int = 64,
                         batch_size: int | None = None, eps: float | None = None, seed: int = 0, device: str = "cpu",
                         n_queries: int | None = None, precision: str = "fp32") -> AutoAttackBench:
    """Measure the runner, the papers' structure and the FLOP floor on the same images (module docstring). With
    only ``model``: that architecture on random images (ε = 1/255 unless given); else a defense (default
    comp_tga) on a protocol's datasets (default micro). ``n_queries``: Square's queries when not the default."""
    load_builtins()
    kw = dict(n_images=n_images, batch_size=batch_size, eps=eps, seed=seed, device=device, n_queries=n_queries)
    if model is not None and defense is None and protocol is None:
        work = model_workload(model, pretrained, image_size=image_size, num_classes=num_classes, **kw)
    else:
        work = protocol_workload(defense or "comp_tga", protocol or "micro", datasets, **kw)
    amp = "fp32" if precision == "tf32" else precision
    with tf32(precision == "tf32"):
        return _measure(work, seed=seed, device=device, precision=precision, amp=amp)


def _measure(work: Workload, *, seed: int, device: str, precision: str, amp: str) -> AutoAttackBench:
    counter = StageCounter(nn.Identity())
    runner_flags, runner_wall, runner_cpu = _timed(runner_path, work, counter, seed=seed, device=device,
                                                   precision=amp)
    papers_flags, papers_wall, papers_cpu = _timed(papers_path, work, seed=seed, device=device, precision=amp)
    name, evalset, indices, prompts = work.sets[0]
    probe = torch.stack([evalset.dataset[i][0] for i in indices[:2]]).to(device)
    fwd, fb = model_gflop(_classifier(work, prompts, device, plain=False), work.parts.visual, probe)
    gpu = device.startswith("cuda")
    peaks = measure_peaks(device, precision)
    peak = peaks.get(precision, peaks["fp32"]) * 1e3 / (1 if gpu else torch.get_num_threads())
    stages = _stages(counter, fwd, fb, peak, gpu)
    total = sum(s.gflop for s in stages)
    runner_s, papers_s = (runner_wall, papers_wall) if gpu else (runner_cpu, papers_cpu)
    differ = sum(int((runner_flags[n] != papers_flags[n]).sum()) for n in runner_flags)
    n = sum(len(s[2]) for s in work.sets)
    return AutoAttackBench(
        device=device if not gpu else f"{device} ({torch.cuda.get_device_name()})", model=work.label,
        datasets=[s[0] for s in work.sets], n_images=n, batch_size=work.batch_size, eps=work.eps,
        precision=precision, attack_params=work.params[SUITE], threads=torch.get_num_threads(),
        runner_wall_s=runner_wall, runner_cpu_s=runner_cpu, papers_wall_s=papers_wall, papers_cpu_s=papers_cpu,
        speedup_vs_papers=papers_s / runner_s, flags_identical=differ == 0, flags_differing=differ,
        robust_accuracy=float(np.concatenate(list(runner_flags.values())).mean()),
        runner_images_per_s=n / runner_wall, papers_images_per_s=n / papers_wall, gflop_forward=fwd,
        gflop_forward_gradient=fb, total_gflop=total, peak_gflops=peak, floor_s=total / peak,
        runner_fraction_of_peak=total / peak / runner_s, papers_fraction_of_peak=total / peak / papers_s,
        stages=stages, notes=[f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); the floor counts the "
                              "runner's passes (the papers' structure makes at least as many); fractions of peak "
                              + ("per wall second (GPU)" if gpu else "per CPU second at one thread's peak")])


def _stages(counter: StageCounter, fwd: float, fb: float, peak: float, gpu: bool) -> list[StageWork]:
    order = ["clean", "apgd-ce", "apgd-t", "fab-t", "square", "other"]
    out = []
    for name in order + sorted(set(counter.wall) - set(order)):
        if name not in counter.wall:
            continue
        gflop = counter.forward_images[name] * fwd + counter.gradient_images[name] * fb
        seconds = counter.wall[name] if gpu else counter.cpu[name]
        rate = gflop / seconds if seconds > 0 else 0.0
        out.append(StageWork(stage=name, wall_s=counter.wall[name], cpu_s=counter.cpu[name],
                             forward_images=counter.forward_images[name],
                             gradient_images=counter.gradient_images[name], gflop=gflop, gflop_per_s=rate,
                             fraction_of_peak=rate / peak))
    return out


def as_dict(result: AutoAttackBench) -> dict[str, Any]:
    return asdict(result)
