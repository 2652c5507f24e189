"""Result records, the versioned leaderboard store and its tables."""

from zsrbench.leaderboard.schema import SCHEMA_VERSION, ResultRecord  # noqa: F401
