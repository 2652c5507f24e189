"""Leaderboard maintenance commands: ``zsrbench migrate-paths``.

``register(app)`` adds them to the main app. They only ever add revisions (history is kept). A
:class:`ZsrError` is printed without a traceback and exits 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from zsrbench import paths
from zsrbench.cli.common import make_console, user_errors


def migrate_paths(
    leaderboard_dir: Path = typer.Argument(..., default_factory=paths.leaderboard_dir, show_default=False,
                                           help="the leaderboard to migrate (default: $ZSRBENCH_HOME/leaderboards, "
                                           "else ./leaderboards)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="say what would be rewritten; write nothing"),
    cache_root: Optional[List[Path]] = typer.Option(
        None, "--cache-root", help="another machine's zsrbench cache folder, as it appears in the records "
        "(repeatable; this machine's cache locations, the default ~/.cache/zsrbench layout and on-demand training "
        "folders are recognised anyway)"),
) -> None:
    """Rewrite machine-local paths in measured entries' model fields as new revisions (history kept)."""
    from zsrbench.leaderboard.maintain import migrate_paths as migrate

    out, err = make_console(), make_console(stderr=True)
    done = migrate(leaderboard_dir, dry_run=dry_run, cache_roots=cache_root or ())
    written = problems = 0
    for m in done:
        where = f"{m.entry_dir.parent.name}/{m.entry_dir.name}"
        if m.problem is not None:
            problems += 1
            err.print(f"[yellow]skipped[/] {escape(where)}: {escape(m.problem)}", highlight=False, soft_wrap=True)
            continue
        head = f"{m.revision.name if m.revision else 'would write a new revision'} {where}"
        written += m.revision is not None
        out.print(escape(head) + "\n  " + escape("\n  ".join(m.changes[1:-1])), highlight=False, soft_wrap=True)
    verb = "would be rewritten" if dry_run else "rewritten as a new revision"
    changed = sum(1 for m in done if m.problem is None)
    out.print(f"{changed} entr{'y' if changed == 1 else 'ies'} {verb}"
              + (f", {problems} skipped" if problems else "") + "; the others name no machine-local path.",
              highlight=False)
    if problems:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``migrate-paths`` to ``app``."""
    app.command("migrate-paths")(user_errors(migrate_paths))
