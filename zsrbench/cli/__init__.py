"""The `zsrbench` command line: one thin module per command group over the Python API.

:mod:`.app` is the root command and mounts the others (:mod:`.run`: run, bench; :mod:`.listing`: list;
:mod:`.data`; :mod:`.train`; :mod:`.pretrain`; :mod:`.leaderboard`: table, compare, show, history, validate;
:mod:`.maintain`; :mod:`.audit`; :mod:`.sweep`; :mod:`.figures`; :mod:`.site`). :mod:`.common` holds the consoles
and the one way a user error is shown (one paragraph, exit code 2).
"""

from zsrbench.cli.app import app, main

__all__ = ["app", "main"]
