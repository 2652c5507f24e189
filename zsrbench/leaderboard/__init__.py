"""Result records, the versioned leaderboard store and its tables.

The runner writes result records (:mod:`.records`); :func:`add_measured` turns them into revisions of
leaderboard entries (:mod:`.store`; the entry files and their names are :mod:`.entries`, reading them back
:mod:`.reading`, the changes a revision lists :mod:`.changes`); :mod:`.reported` imports published numbers;
:mod:`.tables` and :mod:`.render` make the tables, ranked by the rules of :mod:`.ranking`; :mod:`.validate`
checks everything on disk; :mod:`.combine` takes the worst case of several attack suites from the per-sample
flags; :mod:`.audits` stores the verdicts of ``zsrbench audit``; :mod:`.maintain` rewrites old entries
(``zsrbench migrate-paths``).
"""

from zsrbench.leaderboard.schema import ENTRY_SCHEMA_VERSION, SCHEMA_VERSION, LeaderboardEntry, ResultRecord  # noqa: F401
from zsrbench.leaderboard.store import add_measured  # noqa: F401
