"""The `zsrbench` command line: a thin layer over the Python API.

Errors a user can cause are :class:`zsrbench.errors.ZsrError`: printed as one paragraph, exit code 2.
"""

from __future__ import annotations

import sys

import typer

from zsrbench.cli.common import ZsrGroup, fail, setup_logging, user_errors
from zsrbench.errors import ZsrError

app = typer.Typer(cls=ZsrGroup, rich_markup_mode=None, no_args_is_help=False, invoke_without_command=True,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Zero-shot adversarial robustness benchmark for CLIP-like models.")
def _version(value: bool) -> None:
    if value:
        import zsrbench

        typer.echo(f"zsrbench {zsrbench.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="also print debugging lines"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only warnings and errors (no progress lines)"),
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="print zsrbench's version and exit"),
) -> None:
    """With no command, `zsrbench` runs the default evaluation (`zsrbench run`)."""
    setup_logging(verbose=verbose, quiet=quiet)
    if ctx.invoked_subcommand is None:
        from zsrbench.cli.run import run_cmd

        ctx.invoke(run_cmd)


def _mount_commands() -> None:
    """Mount the commands that live in their own modules (each module's ``register(app)``)."""
    from zsrbench.cli.data import data_app
    from zsrbench.cli.pretrain import pretrain
    from zsrbench.cli.train import train

    for module in ("run",  # run, bench
                   "listing"):  # list
        __import__(f"zsrbench.cli.{module}", fromlist=["register"]).register(app)

    app.add_typer(data_app, name="data")
    app.command("train")(user_errors(train))
    app.command("pretrain")(user_errors(pretrain))
    for module in ("leaderboard",  # table, compare, show, history, validate
                   "maintain",  # migrate-paths
                   "audit",  # audit
                   "sweep",  # sweep GRID.toml
                   "figures",  # attention, plot eps|tradeoff|bars
                   "zoo",  # zoo list|show|fetch: the model zoo
                   "site"):  # site OUT: the static website
        __import__(f"zsrbench.cli.{module}", fromlist=["register"]).register(app)


_mount_commands()


def main() -> None:
    try:
        app()
    except ZsrError as exc:  # raised outside a command (e.g. while mounting)
        try:
            fail(str(exc))
        except typer.Exit as e:
            sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
