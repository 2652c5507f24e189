"""What `zsrbench run` says before it starts (model, protocol, suite, ε, datasets, an estimate of the time) and
the protocol average it ends with. Pure functions of a plan, earlier records and the new records."""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any, Callable, Iterable, Sequence

from zsrbench.attacks.base import eps_text


def plan_lines(plan: Any, estimate: tuple[float, int] | None = None) -> list[str]:
    """The lines `run` prints before it starts; ``estimate`` = (seconds, number of records it comes from)."""
    cfg, proto = plan.cfg, plan.protocol
    model = cfg.model or proto.default_model
    if cfg.pretrained or (cfg.model is None and proto.default_pretrained):
        model += f" ({cfg.pretrained or proto.default_pretrained})"
    weights = cfg.checkpoint or _weights(cfg.defense, proto, plan.seed)
    n = "all samples" if plan.n_samples is None else f"{plan.n_samples} per dataset"
    if plan.subset:
        n += f", subset '{plan.subset}'"
    params = "; ".join(f"{a} " + ", ".join(f"{k}={v}" for k, v in sorted(p.items()) if v is not None)
                       for a, p in plan.params.items() if p)
    lines = [
        f"defense {cfg.defense} · model {model}" + (f" · weights {weights}" if weights else ""),
        f"protocol {proto.name} v{proto.version} · suite {plan.suite} · ε = {eps_text(plan.eps)} · "
        f"{len(plan.datasets)} datasets ({', '.join(plan.datasets)}) · {n} · seed {plan.seed} · {plan.device}",
    ]
    if params:
        lines.append(f"attack settings: {params}")
    if estimate is not None:
        seconds, count = estimate
        lines.append(f"estimated attack time: about {_duration(seconds)} of one process (from {count} earlier "
                     "record(s) of this suite here; more processes divide it, fine-tuning is not included)")
    return lines


def _weights(defense: str, proto: Any, seed: int) -> str | None:
    """Where a trainable defense's weights come from without --checkpoint: the package's (shipped) or a
    fine-tuning on demand; None for a defense that is not trained."""
    from zsrbench.registry import DEFENSES

    if not getattr(DEFENSES.get(defense), "trainable", False) or not proto.train_on_demand:
        return None
    from zsrbench.evaluation.model import shipped_weights

    ship = shipped_weights(defense, proto, seed)
    return f"shipped {ship.name} = {ship.model_id} (no fine-tuning)" if ship else "fine-tuned on demand (cached)"


def estimate_seconds(results_dir: str | Path, protocol: str, suite: str, eps: float, datasets: Sequence[str],
                     n_per_dataset: int | None) -> tuple[float, int] | None:
    """Seconds of one process for this suite at this ε, from the median time per image of earlier records of
    the same protocol, suite, ε and dataset in ``results_dir`` (any model), times ``n_per_dataset`` (None: the
    earlier records' own sizes); None when there are none. A results folder the filesystem cannot look up (a
    path longer than it allows) is a :class:`ZsrError` that names --results-dir."""
    from zsrbench.leaderboard.atomic import probe

    root = Path(results_dir).expanduser() / protocol
    if not probe(root, option="--results-dir"):
        return None
    total, used = 0.0, 0
    for d in datasets:
        seen = earlier_timings(results_dir, protocol, suite, eps, d)
        if seen:
            used += len(seen)
            total += median(w / n for w, n in seen) * (n_per_dataset or median(n for _, n in seen))
    return (total, used) if used else None


def earlier_timings(results_dir: str | Path, protocol: str, suite: str, eps: float, dataset: str,
                    version: int | None = None) -> list[tuple[float, int]]:
    """(wall seconds, images) of the earlier records in ``results_dir`` of this protocol (``version``, or any),
    suite, ε and dataset, any model and subset; a folder that cannot be read gives none."""
    tag = f"eps{eps:g}"
    root = Path(results_dir).expanduser() / protocol
    pattern = f"v{'*' if version is None else version}/*/{suite}"
    return timings(p for part in (tag, f"{tag}__*") for p in glob_records(root, f"{pattern}/{part}/{dataset}.json"))


def timings(paths: Iterable[Path]) -> list[tuple[float, int]]:
    """(wall seconds, images) of each readable record among ``paths``."""
    return [t for t in map(record_timing, paths) if t is not None]


def glob_records(root: Path, pattern: str) -> list[Path]:
    """The files under ``root`` that match ``pattern``; none when ``root`` is missing or cannot be read."""
    try:
        return sorted(root.glob(pattern)) if root.is_dir() else []
    except OSError:  # an unreadable folder: no timing from it
        return []


def record_timing(path: Path) -> tuple[float, int] | None:
    """(wall seconds, images) of a record."""
    from zsrbench.errors import ZsrError
    from zsrbench.jsonio import read

    try:
        rec = read(path, "result record")
        wall, n = float(rec["timing"]["wall_s"]), int(rec["metrics"]["n"])
    except (ZsrError, ValueError, KeyError, TypeError):
        return None
    return (wall, n) if n > 0 and wall >= 0 else None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def average_line(records: Sequence[Any], normalised: bool, train_dataset: str | None) -> str | None:
    """``average over 7 datasets: clean 73.4 %, robust 34.2 % (normalised); zero-shot (6): …`` of new records."""
    if not records:
        return None
    clean_key, robust_key = ("clean_normalised", "robust_normalised") if normalised else \
        ("clean_accuracy", "robust_accuracy")

    def avg(rs: Sequence[Any]) -> str:
        c = sum(getattr(r.metrics, clean_key) for r in rs) / len(rs)
        rob = sum(getattr(r.metrics, robust_key) for r in rs) / len(rs)
        return f"clean {100 * c:.2f} %, robust {100 * rob:.2f} %"

    kind = " (normalised accuracy)" if normalised else ""
    text = f"average over {len(records)} datasets{kind}: {avg(records)}"
    zs = [r for r in records if r.protocol.dataset != train_dataset]
    if train_dataset and zs and len(zs) < len(records):
        text += f"; zero-shot average over {len(zs)}: {avg(zs)}"
    return text


def say_plan(plan: Any, log: Callable[[str], None]) -> None:
    """Say what the run will do (and about how long it will take) before it starts."""
    estimate = estimate_seconds(plan.cfg.results_dir, plan.protocol.name, plan.suite, plan.eps, plan.datasets,
                                plan.n_samples)
    for line in plan_lines(plan, estimate):
        log(line)
    _say_mode(plan, log)
    if plan.subset:
        log(f"evaluating the '{plan.subset}' subset of {plan.protocol.name}: {plan.n_samples} seeded samples per "
            "dataset (wider intervals; such entries are not ranked). --subset full evaluates the full test sets "
            "rankings use.")


def _say_mode(plan: Any, log: Callable[[str], None]) -> None:
    """How a test-time defense is attacked (or that a mode asked for a defense without test-time steps is moot)."""
    from zsrbench.evaluation.adaptive import resolve_mode
    from zsrbench.registry import DEFENSES

    _, note = resolve_mode(plan.cfg.attack_mode, DEFENSES.get(plan.cfg.defense))
    if note:
        log(note)
    elif plan.attack_mode:
        steps = "; ".join(plan.attack_mode["test_time"]["steps"])
        log(f"attack mode: {plan.attack_mode['label']} — test-time steps: {steps}")
