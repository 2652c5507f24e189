"""The evaluation audit (``zsrbench audit``): checks that catch gradient masking and randomness.

:mod:`.probes` holds the measurements (pure functions over a classifier and a batch), :mod:`.verdicts` turns
their numbers into per-dataset verdicts, and :mod:`.runner` loads the model as ``zsrbench run`` does, runs the
probes on a seeded subset of each dataset and stores the verdicts as an audit entry of the leaderboard.
"""
