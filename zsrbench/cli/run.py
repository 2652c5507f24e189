"""``zsrbench run`` and ``zsrbench bench``: thin commands over :func:`zsrbench.evaluation.runner.run` and
:func:`zsrbench.evaluation.bench.run_benchmark`."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table

from zsrbench import paths
from zsrbench.cli.common import console, csv_names, default_protocol, info, setup_logging, user_errors
from zsrbench.errors import ZsrError


def run_cmd(
    defense: str = typer.Option("clip", "--defense", "-d", help="defense to evaluate (zsrbench list defenses)"),
    attack: str = typer.Option("pgd", "--attack", "-a", help="attack or comma-separated suite, e.g. pgd,cw"),
    eps: Optional[str] = typer.Option(None, "--eps", help="ε: 4 (units of 1/255), 4/255 or 0.0157 (default: the protocol's)"),
    step: Optional[str] = typer.Option(None, "--step", help="PGD/CW step size, written like --eps (1, 1/255)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="PGD/CW iterations"),
    restarts: Optional[int] = typer.Option(None, "--restarts", help="PGD/CW random restarts"),
    eot: Optional[int] = typer.Option(None, "--eot", help="PGD/CW: average each step's gradient over N forward "
                                      "passes (EOT, for randomised defenses; default 1 = plain PGD)"),
    kappa: Optional[float] = typer.Option(None, "--kappa", help="CW margin κ"),
    criterion: Optional[str] = typer.Option(None, "--criterion", help="PGD/CW success criterion: last | any"),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="an attack or defense "
                                             "parameter (repeatable), read by its declared type: every attack of the "
                                             "suite that has KEY, ATTACK.KEY=VALUE for one, DEFENSE.KEY=VALUE for "
                                             "the defense (e.g. --set n_iter=20, --set cw.steps=50)"),
    adaptive: Optional[bool] = typer.Option(None, "--adaptive/--non-adaptive", help="a test-time defense: attack "
                                            "the defended model (BPDA through its declared steps, EOT over its "
                                            "draws; the default) or, as its paper did, the bare model, the defended "
                                            "one judging (an experiment, never ranked)"),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="protocol (default: micro)"),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="comma-separated subset of the protocol's datasets"),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="folder holding the datasets, or a template such as /data/{dataset}"),
    download: bool = typer.Option(False, "--download", help="let torchvision download missing datasets"),
    skip_broken_images: bool = typer.Option(False, "--skip-broken-images", help="leave out images that do not "
                                            "decode (listed in the record) instead of stopping at the first"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="open_clip architecture, hf-hub:…, local-dir:…"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="open_clip pretrained tag, e.g. openai"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="visual-encoder checkpoint, folder or catalogue name"),
    checkpoint_sha256: Optional[str] = typer.Option(None, "--checkpoint-sha256", help="expected sha256 of --checkpoint"),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="allow pickled objects in the checkpoint"),
    n_samples: Optional[int] = typer.Option(None, "--n-samples", help="seeded subset size per dataset"),
    subset: Optional[str] = typer.Option(None, "--subset", help="a named subset of the protocol's evaluation sets "
                                         "(micro: quick = 64 per task, the default; full = what rankings use)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed for sample selection and attacks"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="evaluation batch (default: the protocol's)"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (default: cuda when available)"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 (exact, the default) | tf32 | bf16 | fp16 "
                                  "(recorded; anything but fp32 is a variant of the protocol)"),
    compile_: bool = typer.Option(False, "--compile", help="run the classifier through torch.compile (recorded)"),
    results_dir: str = typer.Option(..., "--results-dir", default_factory=lambda: str(paths.results_dir()), show_default=False,
                                    help="where result records are written (default: $ZSRBENCH_HOME/results, else ./results)"),
    leaderboard_dir: str = typer.Option(..., "--leaderboard-dir", default_factory=lambda: str(paths.leaderboard_dir()),
                                        show_default=False, help="the versioned leaderboard (default: "
                                        "$ZSRBENCH_HOME/leaderboards, else ./leaderboards)"),
    no_leaderboard: bool = typer.Option(False, "--no-leaderboard", help="write result records only"),
    shard: Optional[str] = typer.Option(None, "--shard", help="K/N: evaluate every N-th dataset from the K-th (0-based), for N processes"),
    resume: bool = typer.Option(False, "--resume", help="skip datasets already evaluated with the same settings"),
    replace_entry: bool = typer.Option(False, "--replace-entry", help="the new leaderboard revision holds only this "
                                       "run's datasets, dropping the entry's others (which it otherwise keeps)"),
    jobs: str = typer.Option("auto", "--jobs", "-j", help="local processes sharing the run's work units (torch.distributed "
                             "ranks): N or auto (one per core on CPU, 1 on GPU; $ZSRBENCH_JOBS overrides auto); "
                             "for several GPUs or machines start the run with torchrun"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar and no progress lines"),
) -> None:
    """Evaluate a defense under an attack suite and write per-dataset result records."""
    from zsrbench.evaluation.ranks import parse_jobs
    from zsrbench.eps import parse_eps
    from zsrbench.evaluation.config import RunConfig
    from zsrbench.evaluation.runner import run

    attack_params, defense_params = _run_params(attack, defense, sets, {
        "step": parse_eps(step, "--step"), "steps": steps, "restarts": restarts, "eot": eot, "kappa": kappa,
        "criterion": criterion})
    cfg = RunConfig(
        defense=defense, protocol=protocol or default_protocol(), attacks=csv_names(attack) or (), eps=parse_eps(eps),
        attack_params=attack_params, defense_params=defense_params,
        model=model, pretrained=pretrained, checkpoint=checkpoint, checkpoint_sha256=checkpoint_sha256,
        trust_checkpoint=trust_checkpoint, datasets=csv_names(datasets), data_root=data_root, download=download,
        skip_broken_images=skip_broken_images,
        n_samples=n_samples, subset=subset, seed=seed, batch_size=batch_size, device=device, precision=precision,
        compile=compile_,
        results_dir=results_dir, leaderboard_dir=None if no_leaderboard else leaderboard_dir, resume=resume,
        replace_entry=replace_entry,
        shard=_shard(shard), jobs=parse_jobs(jobs),
        attack_mode=None if adaptive is None else ("adaptive" if adaptive else "non-adaptive"),
    )
    import logging

    if quiet:
        setup_logging(quiet=True)
    quiet = quiet or logging.getLogger("zsrbench").level >= logging.WARNING  # `zsrbench -q run`: no bars either
    results = run(cfg, progress=not quiet, log=info)
    show_results(results)
    _say_average(results, cfg.protocol)
    _say_published(checkpoint)


def _say_published(checkpoint: Optional[str]) -> None:
    """For a zoo model: the published numbers it should reproduce, beside the ones just measured."""
    if not checkpoint:
        return
    from zsrbench.cli.zoo import numbers_text, published_rows
    from zsrbench.models import catalogue

    entry = catalogue.lookup(checkpoint)
    for r in published_rows(entry) if entry is not None else []:
        value = f"{r['average']} %" if r["average"] is not None else f"per dataset {numbers_text(r)} (%)"
        info(f"published for {entry.name} ({r['protocol']} protocol): {r['metric']} {value} "
             f"({r['attack']}, ε {r['eps']}) — {r['source']}")


def _say_average(results: list[Any], protocol: str) -> None:
    from zsrbench.protocols import get_protocol
    from zsrbench.evaluation.summary import average_line

    proto = get_protocol(protocol)
    line = average_line([r.record for r in results], proto.normalised_average, proto.train_dataset)
    if line:
        console.print(line, highlight=False, soft_wrap=True)


def _run_params(attack: str, defense: str, sets: Optional[list[str]],
                options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The attack parameters of `run` (its own options, --steps ..., and the --set KEY=VALUE items) and the
    defense's inference parameters (--set DEFENSE.KEY=VALUE)."""
    if not sets:
        return options, {}
    from zsrbench.evaluation.params import parse_sets

    attack_params, defense_params = parse_sets(csv_names(attack) or (), sets, given=options, defense=defense)
    return {**options, **attack_params}, defense_params


def _shard(value: Optional[str]) -> Optional[tuple[int, int]]:
    if value is None:
        return None
    try:
        k, n = (int(v) for v in value.split("/"))
    except ValueError:
        raise ZsrError(f"--shard takes K/N, e.g. --shard 0/4; got '{value}'.") from None
    return k, n


def show_results(results: list[Any]) -> None:
    if not results:
        return
    table = Table(title=f"{results[0].record.model.id} · {results[0].record.protocol.suite} "
                        f"ε={results[0].record.protocol.eps_text}")
    for col in ("dataset", "n", "clean %", "robust %"):
        table.add_column(col, justify="right" if col != "dataset" else "left")
    for r in results:
        m = r.record.metrics
        table.add_row(r.record.protocol.dataset, str(m.n), f"{100 * m.clean_accuracy:.2f}", f"{100 * m.robust_accuracy:.2f}")
    console.print(table)


def bench_cmd(
    defense: Optional[str] = typer.Option(None, "--defense", "-d", help="defense whose model is measured, loaded as "
                                          "`zsrbench run` loads it (default: clip, unless only --model is given)"),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="protocol of the defense (default: micro)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="protocol dataset (default: the protocol's first)"),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="folder holding the datasets, or a template such as /data/{dataset}"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="architecture; alone: on random images"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (default: cuda when available)"),
    n_images: int = typer.Option(128, "--n-images"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="default: the protocol's, or 64"),
    steps: int = typer.Option(100, "--steps", help="PGD steps"),
    eps: Optional[str] = typer.Option(None, "--eps", help="ε: 1 (units of 1/255), 1/255 or 0.0039 (default: 1 for "
                                      "pgd, the protocol's for --suite autoattack)"),
    step: str = typer.Option("1", "--step", help="PGD step, written like --eps"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | tf32 | bf16 | fp16"),
    repeats: int = typer.Option(1, "--repeats", help="best of N interleaved measurements"),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="random images' size (--model alone)"),
    seed: int = typer.Option(0, "--seed"),
    json_out: bool = typer.Option(False, "--json", help="print the measurement as JSON"),
    out: Optional[str] = typer.Option(None, "--out", help="also write the measurement as JSON to this file"),
    suite: str = typer.Option("pgd", "--suite", help="pgd | autoattack (standard AutoAttack on a protocol's "
                              "datasets: the runner, the papers' structure and the FLOP floor, per stage)"),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="--suite autoattack: comma-separated datasets "
                                           "(default: all of the protocol's)"),
    n_queries: Optional[int] = typer.Option(None, "--n-queries", help="--suite autoattack: Square's queries "
                                            "(default: the protocol's)"),
) -> None:
    """Measure the runner's PGD (or standard AutoAttack: --suite autoattack) throughput beside the papers'
    evaluation structure and the device's matmul peak."""
    from zsrbench.evaluation.bench import as_dict, run_benchmark
    from zsrbench.eps import parse_eps
    from zsrbench.evaluation.config import check_device

    if suite not in ("pgd", "autoattack"):
        raise ZsrError(f"Unknown --suite '{suite}'; zsrbench bench measures pgd or autoattack.")
    if suite == "autoattack":
        res = _bench_autoattack(defense, protocol, datasets, model, pretrained, image_size, n_images, batch_size, eps,
                                seed, device, n_queries, precision)
        _write_bench(res, out, json_out)
        if not json_out:
            _print_autoattack_bench(res)
        return
    res = as_dict(run_benchmark(
        defense=defense, protocol=protocol, dataset=dataset, model=model, pretrained=pretrained, data_root=data_root,
        device=check_device(device), n_images=n_images, batch_size=batch_size, steps=steps, eps=parse_eps(eps or "1"), step=parse_eps(step, "--step"),
        precision=precision, image_size=image_size, seed=seed, repeats=repeats))
    _write_bench(res, out, json_out)
    if json_out:
        return
    table = Table(title=f"zsrbench bench: PGD-{res['steps']} ε={res['eps']:g}/255 step {res['step']:g}/255, "
                        f"last iterate, {res['precision']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in res.items():
        text = (f"{v:.4g}" if isinstance(v, float) else "; ".join(v) if isinstance(v, list)
                else ", ".join(f"{a} {b:.4g}" for a, b in v.items()) if isinstance(v, dict) else str(v))
        table.add_row(k, text)
    console.print(table)


def _write_bench(res: dict[str, Any], out: Optional[str], json_out: bool) -> None:
    import json

    if out:
        from pathlib import Path

        Path(out).expanduser().write_text(json.dumps(res, indent=2) + "\n")
    if json_out:
        typer.echo(json.dumps(res, indent=2))


def _bench_autoattack(defense: Optional[str], protocol: Optional[str], datasets: Optional[str], model: Optional[str],
                      pretrained: Optional[str], image_size: Optional[int], n_images: int,
                      batch_size: Optional[int], eps: Optional[str], seed: int, device: Optional[str],
                      n_queries: Optional[int], precision: str) -> dict[str, Any]:
    from zsrbench.eps import parse_eps
    from zsrbench.evaluation.bench_autoattack import as_dict, run_autoattack_bench
    from zsrbench.evaluation.config import check_device

    from zsrbench.evaluation.bench import BENCH_PRECISIONS

    if n_images < 1 or (batch_size is not None and batch_size < 1) or (n_queries is not None and n_queries < 1):
        raise ZsrError("--n-images, --batch-size and --n-queries must be at least 1.")
    if precision not in BENCH_PRECISIONS:
        raise ZsrError(f"Unknown precision '{precision}'; use one of {', '.join(BENCH_PRECISIONS)}.")
    return as_dict(run_autoattack_bench(
        defense=defense, protocol=protocol, datasets=list(csv_names(datasets) or ()) or None, model=model,
        pretrained=pretrained, image_size=image_size, n_images=n_images, batch_size=batch_size,
        eps=parse_eps(eps) if eps is not None else None, seed=seed, device=check_device(device),
        n_queries=n_queries, precision=precision))


def _print_autoattack_bench(res: dict[str, Any]) -> None:
    table = Table(title=f"zsrbench bench --suite autoattack: {res['model']}, {res['n_images']} images of "
                        f"{len(res['datasets'])} dataset(s), ε={res['eps']:g}/255, {res['precision']}, "
                        f"{res['threads']} thread(s), {res['device']}")
    per = "CPU-s" if res["device"] == "cpu" else "s"
    for col in ("stage", "wall s", "CPU s", "forward img", "gradient img", "GFLOP", f"GFLOP/{per}", "of peak"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for st in res["stages"]:
        table.add_row(st["stage"], f"{st['wall_s']:.1f}", f"{st['cpu_s']:.1f}", str(st["forward_images"]),
                      str(st["gradient_images"]), f"{st['gflop']:.1f}", f"{st['gflop_per_s']:.1f}",
                      f"{st['fraction_of_peak']:.0%}")
    console.print(table)
    console.print(f"runner {res['runner_cpu_s']:.1f} CPU-s, {res['runner_wall_s']:.1f} s wall · papers' structure "
                  f"{res['papers_cpu_s']:.1f} CPU-s, {res['papers_wall_s']:.1f} s wall: {res['speedup_vs_papers']:.2f}× "
                  f"· flags {'identical' if res['flags_identical'] else str(res['flags_differing']) + ' differ'} · "
                  f"floor {res['floor_s']:.1f} {per} ({res['total_gflop']:.0f} GFLOP at {res['peak_gflops']:.0f} "
                  f"GFLOP/s{' per thread' if per == 'CPU-s' else ''}): runner at "
                  f"{res['runner_fraction_of_peak']:.0%} of peak, papers' structure at "
                  f"{res['papers_fraction_of_peak']:.0%}")


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``bench`` to ``app``."""
    app.command("run")(user_errors(run_cmd))
    app.command("bench")(user_errors(bench_cmd))
