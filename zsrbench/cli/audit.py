"""``zsrbench audit``: a thin typer command over :func:`zsrbench.audit.runner.run_audit`.

Exit status: 0 when no check fails (warnings allowed), 1 when one fails, 2 on a user error.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from zsrbench import paths
from zsrbench.cli.common import console, info, user_errors
from zsrbench.errors import ZsrError

STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "n/a": "dim"}


def audit(
    defense: str = typer.Option("clip", "--defense", "-d", help="defense to audit (zsrbench list defenses)"),
    entry: Optional[str] = typer.Option(None, "--entry", help="audit the model of this leaderboard entry instead"),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="protocol (default: micro)"),
    eps: Optional[str] = typer.Option(None, "--eps", help="ε: 4 (units of 1/255), 4/255 or 0.0157 (default: the protocol's)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="open_clip architecture, hf-hub:…, local-dir:…"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="open_clip pretrained tag"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="visual-encoder checkpoint, folder or catalogue name"),
    checkpoint_sha256: Optional[str] = typer.Option(None, "--checkpoint-sha256", help="expected sha256 of --checkpoint"),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="allow pickled objects in the checkpoint"),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="DEFENSE.KEY=VALUE", help="an inference setting "
                                             "of the defense (repeatable), e.g. --set ttc.victim=tecoa"),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="comma-separated subset of the protocol's datasets"),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="folder holding the datasets, or a template such as /data/{dataset}"),
    n_samples: Optional[int] = typer.Option(None, "--n-samples", help="seeded samples per dataset (default: the "
                                            "protocol's quick subset, else 256)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed for sample selection and attacks"),
    square_queries: int = typer.Option(1000, "--square-queries", help="queries of the Square attack"),
    eot: int = typer.Option(10, "--eot", help="gradient samples per step when the model is randomised"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="batch (default: the protocol's)"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (default: cuda when available)"),
    leaderboard_dir: str = typer.Option(..., "--leaderboard-dir", default_factory=lambda: str(paths.leaderboard_dir()),
                                        show_default=False, help="the versioned leaderboard (default: "
                                        "$ZSRBENCH_HOME/leaderboards, else ./leaderboards)"),
    no_leaderboard: bool = typer.Option(False, "--no-leaderboard", help="print the audit only, record nothing"),
    json_: bool = typer.Option(False, "--json", help="print the audit as JSON"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
) -> None:
    """Check that an evaluation is valid: gradient masking, randomness, ε behaviour, convergence, black-box and
    transfer consistency. Exit 0 when no check fails, 1 when one does."""
    from zsrbench.audit.runner import AuditConfig, run_audit
    from zsrbench.cli.common import csv_names, default_protocol
    from zsrbench.eps import parse_eps
    from zsrbench.evaluation.config import RunConfig

    defense_params = _defense_params(defense, sets)
    run = RunConfig(defense=defense, protocol=protocol or default_protocol(), attacks=("pgd",), eps=parse_eps(eps),
                    defense_params=defense_params,
                    model=model, pretrained=pretrained, checkpoint=checkpoint, checkpoint_sha256=checkpoint_sha256,
                    trust_checkpoint=trust_checkpoint, datasets=csv_names(datasets), data_root=data_root, seed=seed,
                    device=device, leaderboard_dir=None if no_leaderboard else leaderboard_dir)
    expected_id = None
    if entry is not None:
        run, expected_id = _from_entry(run, entry, leaderboard_dir, explicit=protocol is not None or eps is not None)
    cfg = AuditConfig(run=run, n_samples=n_samples, square_queries=square_queries, eot=eot, batch_size=batch_size)
    result = run_audit(cfg, log=None if quiet or json_ else info)
    if expected_id is not None and result.entry.model.id != expected_id:
        raise ZsrError(f"The model rebuilt for entry '{entry}' is {result.entry.model.id}, not the entry's "
                       f"{expected_id}; pass its --checkpoint (and --model) to audit it.")
    if json_:
        sys.stdout.write(json.dumps(result.entry.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
    else:
        show(result)
    if result.verdict == "fail":
        raise typer.Exit(1)


def _defense_params(defense: str, sets: Optional[list[str]]) -> dict[str, Any]:
    """The defense's inference settings from ``--set DEFENSE.KEY=VALUE`` (the audit chooses its own attacks)."""
    if not sets:
        return {}
    from zsrbench.evaluation.params import parse_sets

    attack_params, defense_params = parse_sets(("pgd",), sets, given={}, defense=defense)
    if attack_params:
        raise ZsrError(f"zsrbench audit chooses its own attacks; --set takes the defense's settings only "
                       f"(--set {defense}.KEY=VALUE), not {', '.join(sorted(attack_params))}.")
    return defense_params


def _from_entry(run: Any, name: str, leaderboard_dir: str, *, explicit: bool) -> tuple[Any, str]:
    """``run`` pointed at the model, protocol and ε of a measured leaderboard entry, and the entry's model id."""
    from dataclasses import replace

    from zsrbench.leaderboard import store

    if explicit:
        raise ZsrError("--entry already names the protocol and ε; drop --protocol and --eps.")
    edir, revision = store.resolve_entry(leaderboard_dir, name)
    hist = [h for h in store.history(edir) if revision is None or h[0] == revision]
    if not hist or isinstance(hist[-1][2], ZsrError):
        raise ZsrError(f"Entry '{name}' has no readable revision; run `zsrbench validate {edir}`.")
    e = hist[-1][2]
    if e.kind != "measured":
        raise ZsrError(f"Entry '{name}' is {e.kind}, not a measured model: audit a measured entry or name the "
                       "model with --defense/--model/--checkpoint.")
    return replace(run, defense=e.model.defense or run.defense, protocol=e.protocol.name,
                   eps=round(float(e.eps or 0) * 255, 6) or None), e.model.id


def audit_table(entry: Any) -> Table:
    """The checks of an audit entry: verdict and numbers, one row each."""
    t = Table(title=f"audit of {entry.model.id} · {entry.protocol.name} v{entry.protocol.version} "
                    f"· ε = {entry.eps_text}", title_justify="left")
    t.add_column("check")
    t.add_column("verdict")
    t.add_column("numbers", overflow="fold")
    for c in entry.audit.checks:
        t.add_row(escape(c.title), f"[{STYLE[c.verdict]}]{c.verdict}[/]", escape(c.summary))
    return t


def print_audit(entry: Any, out: Any = console) -> None:
    """The table, the samples the failing or warning checks list, and the verdict."""
    a = entry.audit
    out.print(audit_table(entry))
    for c in a.checks:
        listed = {ds: ids for ds, ids in c.samples.items() if ids}
        if listed and c.verdict != "pass":
            out.print(f"{c.name}: samples " + "; ".join(f"{ds} {ids[:12]}{' …' if len(ids) > 12 else ''}"
                                                     for ds, ids in listed.items()), highlight=False, soft_wrap=True)
    from zsrbench.leaderboard.audits import dataset_verdicts

    per = []
    for ds, v in dataset_verdicts(a).items():
        carried = (a.datasets.get(ds) or {}).get("carried_from")
        per.append(f"{escape(ds)} [{STYLE.get(v, 'dim')}]{v}[/]" + (f" (kept from {carried})" if carried else ""))
    if per:
        out.print("per dataset: " + ", ".join(per), highlight=False, soft_wrap=True)
    extra = " (randomised: rank it only with EOT)" if a.randomised else ""
    out.print(f"verdict: [{STYLE[a.verdict]}]{a.verdict}[/]{extra}", highlight=False)


def show(result: Any) -> None:
    print_audit(result.entry)
    if result.path is not None:
        what = f"reproduced {result.path.stem}" if result.reproduced else f"leaderboard: {result.path}"
        console.print(what, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("audit")(user_errors(audit))
