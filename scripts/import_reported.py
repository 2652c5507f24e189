#!/usr/bin/env python
"""Import the published numbers of ``zsrbench/reported_data/*.csv`` as *reported* leaderboard entries.

    python scripts/import_reported.py [--csv-dir zsrbench/reported_data] [--leaderboard-dir leaderboards]

The CSVs ship inside the package (``tga16_neurips24.csv``, ``others.csv`` and ``zoo.csv``, the published rows of
the model zoo's models; installed users' tables build the same entries in memory); the output under
``leaderboards/<protocol>/reported__*`` is committed, so the checkout's history of every number is kept. Re-running with unchanged CSVs adds nothing; a corrected number adds a
new revision of its entry (the old one stays, see ``zsrbench history``); an entry the corrected CSVs no longer
produce gets a new revision marking it withdrawn (tables leave it out, its history stays).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from zsrbench.errors import ZsrError  # noqa: E402
from zsrbench.leaderboard.reported import import_reported  # noqa: E402
from zsrbench.leaderboard.store import read_entry  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv-dir", type=Path, default=None,
                    help="folder of the CSVs (default: the ones shipped in the package, zsrbench/reported_data)")
    ap.add_argument("--leaderboard-dir", type=Path, default=REPO / "leaderboards")
    args = ap.parse_args(argv)
    try:
        before = {p for p in args.leaderboard_dir.rglob("r*.json")} if args.leaderboard_dir.exists() else set()
        paths = import_reported(args.csv_dir, args.leaderboard_dir)
    except ZsrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    new = [p for p in paths if p not in before]
    withdrawn = 0
    for p in new:
        shown = p.relative_to(args.leaderboard_dir) if p.is_relative_to(args.leaderboard_dir) else p
        reason = read_entry(p).reported.withdrawn
        withdrawn += reason is not None
        print(f"withdrew {shown}: {reason}" if reason else f"added {shown}")
    print(f"{len(paths)} reported entries, {len(new)} new revision(s) ({withdrawn} withdrawn), "
          f"{len(paths) - len(new)} unchanged.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
