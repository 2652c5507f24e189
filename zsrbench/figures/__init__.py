"""Figures: text-guided attention maps and the attention shift (:mod:`.attention`), and plots of recorded
results (:mod:`.plots`: robust accuracy vs ε, clean vs robust trade-off, per-dataset bars).

Figures are drawn with matplotlib's Agg canvas (no display needed) and written as PNG or SVG, atomically.
Nothing here computes a new accuracy: plots read records and leaderboard entries, and their intervals come
from :mod:`zsrbench.stats` through :mod:`zsrbench.leaderboard.tables`.
"""
