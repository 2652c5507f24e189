"""The figure commands: ``zsrbench attention`` and ``zsrbench plot eps | tradeoff | bars``.

Thin typer functions over :mod:`zsrbench.figures`; ``register(app)`` adds them to the main app. A
:class:`ZsrError` is printed without a traceback and exits 2, and then nothing has been written.
"""

from __future__ import annotations

from typing import Any, List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from zsrbench import paths
from zsrbench.cli.common import console, info, user_errors
from zsrbench.log import LOG

plot_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="Plots of recorded results: robust accuracy vs ε, clean vs robust, per-dataset bars.")


def csv_names(value: Optional[str]) -> tuple[str, ...]:
    from zsrbench.cli.common import csv_names as split

    return split(value) or ()


def _protocol(name: Optional[str]) -> str:
    from zsrbench.cli.common import default_protocol

    return name or default_protocol()


def _warn(text: str) -> None:
    LOG.warning(text)


def attention(
    defense: str = typer.Option("clip", "--defense", "-d", help="defense or comma-separated defenses, e.g. "
                                "comp_tga,clip (the protocol's base CLIP is always shown)"),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="protocol (default: micro)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="one of the protocol's datasets (default: its "
                                          "first zero-shot dataset)"),
    attack: str = typer.Option("pgd", "--attack", "-a", help="the attack giving x′ (one attack, the protocol's "
                               "parameters)"),
    eps: Optional[str] = typer.Option(None, "--eps", help="ε: 4 (units of 1/255), 4/255 or 0.0157 (default: the "
                                      "protocol's)"),
    step: Optional[str] = typer.Option(None, "--step", help="PGD/CW step size, written like --eps"),
    steps: Optional[int] = typer.Option(None, "--steps", help="PGD/CW iterations"),
    restarts: Optional[int] = typer.Option(None, "--restarts", help="PGD/CW random restarts"),
    sets: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="another attack parameter "
                                             "(repeatable), as `zsrbench run --set` takes it"),
    n_images: int = typer.Option(3, "--n-images", help="images drawn (seeded; a subset of the --n-shift ones)"),
    n_shift: int = typer.Option(64, "--n-shift", help="seeded images the attention shift is measured on"),
    norm: str = typer.Option("token_axis", "--norm", help="token_axis (the official code) | per_token"),
    out: Optional[List[str]] = typer.Option(None, "--out", "-o", help="figure file(s): .png or .svg (repeatable; "
                                            "default attention.png)"),
    format_: Optional[str] = typer.Option(None, "--format", help="png, svg or png,svg (one file per format)"),
    no_figure: bool = typer.Option(False, "--no-figure", help="measure and record the shift only"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="open_clip architecture, hf-hub:…, local-dir:…"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="open_clip pretrained tag"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="weights of the (single) defense"),
    checkpoint_sha256: Optional[str] = typer.Option(None, "--checkpoint-sha256", help="expected sha256 of --checkpoint"),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="allow pickled objects in the checkpoint"),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="folder holding the datasets"),
    download: bool = typer.Option(False, "--download", help="let torchvision download a missing dataset"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed of the samples and the attack"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="attack batch (default: the protocol's)"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (default: cuda when available)"),
    results_dir: str = typer.Option(..., "--results-dir", default_factory=lambda: str(paths.results_dir()),
                                    show_default=False, help="where the attention-shift records go (default: "
                                    "$ZSRBENCH_HOME/results, else ./results)"),
    no_record: bool = typer.Option(False, "--no-record", help="write no attention-shift record"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
) -> None:
    """Draw text-guided attention maps (base CLIP and each defense, clean and adversarial) and measure and record
    the attention shift ‖A(x′) − A(x)‖₂."""
    from zsrbench.eps import parse_eps
    from zsrbench.figures.attention import run_attention
    from zsrbench.figures.attention_plan import AttentionConfig
    from zsrbench.figures.output import parse_formats

    outs: tuple[str, ...] = () if no_figure else tuple(out or ("attention.png",))
    params: dict[str, Any] = {"step": parse_eps(step, "--step"), "steps": steps, "restarts": restarts}
    if sets:
        from zsrbench.evaluation.params import parse_attack_sets

        params.update(parse_attack_sets((attack,), sets, given=params))
    cfg = AttentionConfig(
        defenses=csv_names(defense), protocol=_protocol(protocol), dataset=dataset, attack=attack, eps=parse_eps(eps),
        attack_params=params, model=model, pretrained=pretrained,
        checkpoint=checkpoint, checkpoint_sha256=checkpoint_sha256, trust_checkpoint=trust_checkpoint,
        data_root=data_root, download=download, n_images=n_images, n_shift=n_shift, seed=seed, norm=norm,
        batch_size=batch_size, device=device, results_dir=None if no_record else results_dir, outs=outs,
        formats=parse_formats(format_))
    result = run_attention(cfg, log=None if quiet else info, progress=not quiet)
    for note in result.notes:
        console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    console.print(shift_table(result))
    for path in result.figures:
        console.print(f"figure: {path}", highlight=False, soft_wrap=True)


def shift_table(result: Any) -> Table:
    """The attention shift of each model: mean ± standard error over the seeded images, and the record."""
    from zsrbench.attacks.base import eps_text
    from zsrbench.figures.shift import summarise

    plan = result.plan
    n = len(result.shift_indices)
    t = Table(title=f"attention shift ‖A(x′) − A(x)‖₂ · {plan.protocol.name} v{plan.protocol.version} · "
                    f"{plan.dataset} · {plan.spec.name} ε={eps_text(plan.eps)} · {n} images", title_justify="left")
    for col in ("model", "id", "shift (mean ± s.e.)", "A_comp shift", "clean ok", "robust", "record"):
        t.add_column(col, justify="left" if col in ("model", "id", "record") else "right", overflow="fold")

    def fmt(values: Any) -> str:
        s = summarise(values)
        return f"{s.mean:.3f}" + (f" ± {s.se:.3f}" if s.se is not None else "")

    for m in result.models:
        t.add_row(escape(m.label), escape(m.model_id), fmt(m.shifts["class"]),
                  fmt(m.shifts["comp"]) if "comp" in m.shifts else "", f"{m.clean_correct}/{n}", f"{m.robust}/{n}",
                  escape(str(m.path)) if m.path else "(not recorded)")
    return t


# --- zsrbench plot ---------------------------------------------------------------------------------------------

_RESULTS = typer.Option(None, "--results-dir", help="plot raw result records from this folder")
_LEADERBOARD = typer.Option(None, "--leaderboard-dir", help="plot this leaderboard (default: $ZSRBENCH_HOME/leaderboards, else ./leaderboards)")
_PROTOCOL = typer.Option(None, "--protocol", "-p", help="protocol (default: micro)")
_ATTACK = typer.Option(None, "--attack", "-a", help="attack suite (default: the only one, else the protocol's "
                       "required suite)")
_AVERAGE = typer.Option("zero-shot", "--average", help="zero-shot (without the source task) | all")
_DATASET = typer.Option(None, "--dataset", help="one dataset instead of the average")
_MODELS = typer.Option(None, "--models", help="comma-separated parts of model ids or defense names")
_SUBSET = typer.Option(None, "--subset", help="sample set: full or a named subset (e.g. quick)")
_VERSION = typer.Option("latest", "--protocol-version", help="latest or a version number")
_FORMAT = typer.Option(None, "--format", help="png, svg or png,svg")


def _chosen(protocol: Optional[str], results_dir: Optional[str], leaderboard_dir: Optional[str], version: str,
            subset: Optional[str], attack: Optional[str], models: Optional[str]) -> Any:
    from zsrbench.figures import plots

    board = plots.load_board(results_dir=results_dir, leaderboard_dir=leaderboard_dir, protocol=protocol)
    for w in board.warnings:
        _warn(w)
    sel = plots.Selection(protocol=_protocol(protocol), version=version, subset=subset, attack=attack,
                          models=csv_names(models))
    return plots.choose(board.entries, sel, where=_where(results_dir, leaderboard_dir), audits=board.audits)


def _where(results_dir: Optional[str], leaderboard_dir: Optional[str]) -> str:
    """Where the plotted entries come from, as error messages name it."""
    return f"--results-dir {results_dir}" if results_dir is not None else \
        f"the leaderboard {leaderboard_dir or paths.leaderboard_dir()}"


def _save(fig: Any, out: str, format_: Optional[str], warnings: list[str]) -> None:
    from zsrbench.figures.output import figure_files, parse_formats, resolve_outputs, write_files

    for w in warnings:
        _warn(w)
    for path in write_files(figure_files(fig, resolve_outputs([out], parse_formats(format_)))):
        console.print(f"figure: {path}", highlight=False, soft_wrap=True)


def _check_out(out: str, format_: Optional[str]) -> None:
    """The output is checked before anything is read or drawn."""
    from zsrbench.figures.output import parse_formats, resolve_outputs

    resolve_outputs([out], parse_formats(format_))


@plot_app.command("eps")
@user_errors
def plot_eps(
    protocol: Optional[str] = _PROTOCOL,
    attack: Optional[str] = _ATTACK,
    average: str = _AVERAGE,
    dataset: Optional[str] = _DATASET,
    models: Optional[str] = _MODELS,
    subset: Optional[str] = _SUBSET,
    protocol_version: str = _VERSION,
    results_dir: Optional[str] = _RESULTS,
    leaderboard_dir: Optional[str] = _LEADERBOARD,
    out: str = typer.Option("eps.png", "--out", "-o", help="figure file (.png or .svg)"),
    format_: Optional[str] = _FORMAT,
) -> None:
    """Robust accuracy vs ε, one line per model (clean accuracy at ε = 0), with 95% intervals."""
    from zsrbench.figures import plots

    _check_out(out, format_)
    chosen = _chosen(protocol, results_dir, leaderboard_dir, protocol_version, subset, attack, models)
    fig, warnings = plots.eps_figure(chosen, average=average, dataset=dataset)
    _save(fig, out, format_, warnings)


@plot_app.command("tradeoff")
@user_errors
def plot_tradeoff(
    protocol: Optional[str] = _PROTOCOL,
    attack: Optional[str] = _ATTACK,
    eps: Optional[str] = typer.Option(None, "--eps", help="ε in units of 1/255 (default: the only one measured, "
                                      "else the protocol's)"),
    average: str = _AVERAGE,
    dataset: Optional[str] = _DATASET,
    models: Optional[str] = _MODELS,
    subset: Optional[str] = _SUBSET,
    protocol_version: str = _VERSION,
    results_dir: Optional[str] = _RESULTS,
    leaderboard_dir: Optional[str] = _LEADERBOARD,
    out: str = typer.Option("tradeoff.png", "--out", "-o", help="figure file (.png or .svg)"),
    format_: Optional[str] = _FORMAT,
) -> None:
    """Clean vs robust accuracy, one point per model, with 95% intervals on both axes."""
    from zsrbench.figures import plots

    _check_out(out, format_)
    chosen = _chosen(protocol, results_dir, leaderboard_dir, protocol_version, subset, attack, models)
    fig, warnings = plots.tradeoff_figure(chosen, eps=eps, average=average, dataset=dataset)
    _save(fig, out, format_, warnings)


@plot_app.command("bars")
@user_errors
def plot_bars(
    entries: List[str] = typer.Argument(..., help="entry names (as `zsrbench table` shows them, or a unique part)"),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="only entries of this protocol"),
    results_dir: Optional[str] = _RESULTS,
    leaderboard_dir: Optional[str] = _LEADERBOARD,
    out: str = typer.Option("bars.png", "--out", "-o", help="figure file (.png or .svg)"),
    format_: Optional[str] = _FORMAT,
) -> None:
    """Per-dataset clean and robust accuracy of one or more entries (Wilson 95% intervals, chance marked)."""
    from zsrbench.figures import plots

    _check_out(out, format_)
    board = plots.load_board(results_dir=results_dir, leaderboard_dir=leaderboard_dir, protocol=protocol)
    chosen = plots.match_entries(board.entries, entries, where=_where(results_dir, leaderboard_dir))
    _save(plots.bars_figure(chosen, plots.bars_standing(board, chosen)), out, format_, board.warnings)


def register(app: typer.Typer) -> None:
    app.command("attention")(user_errors(attention))
    app.add_typer(plot_app, name="plot")
