"""Work units run the longest expected first; the order changes when a unit is evaluated, never what it computes."""

from __future__ import annotations

import json

import numpy as np

from zsrbench.evaluation import runner
from zsrbench.evaluation.config import RunConfig
from zsrbench.evaluation.costs import longest_first, seconds_per_sample


def test_longest_first_is_stable():
    units = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    assert longest_first(units, [1, 1, 5, 5, 2]) == [(1, 0), (1, 1), (2, 0), (0, 0), (0, 1)]
    assert longest_first(units, [1] * 5) == units


def _record(path, wall, n):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"timing": {"wall_s": wall}, "metrics": {"n": n}}))


def test_seconds_per_sample_from_results_then_the_leaderboard(tmp_path):
    res, board = tmp_path / "results", tmp_path / "leaderboards"
    _record(res / "micro/v3/clip_x/autoattack/eps4/micro_color.json", 20.0, 10)
    _record(res / "micro/v3/tecoa_x/autoattack/eps4__quick/micro_color.json", 40.0, 10)
    _record(res / "micro/v3/clip_x/pgd/eps4/micro_count.json", 99.0, 1)  # another suite: not used
    _record(board / "micro/clip__zsr-micro__abc__autoattack__eps4__v3/r0001/micro_count.json", 30.0, 10)
    _record(board / "micro/clip__zsr-micro__abc__autoattack__eps4__v2/r0001/micro_shape.json", 50.0, 10)  # v2
    rate = seconds_per_sample(res, board, "micro", 3, "autoattack", 4.0, ["micro_color", "micro_count", "micro_shape"])
    assert rate == {"micro_color": 3.0, "micro_count": 3.0}
    assert seconds_per_sample(res, None, "micro", 3, "autoattack", 4.0, ["micro_count"]) == {}


def _flags(results):
    return {r.record.protocol.dataset: dict(np.load(r.path.with_suffix(".flags.npz"))) for r in results}


def test_the_order_of_units_leaves_every_flag_unchanged(tmp_path, monkeypatch):
    cfg = dict(protocol="synthetic", datasets=("synthetic_shapes", "synthetic_colors"), attacks=("pgd", "cw"),
               attack_params={"steps": 3}, n_samples=24, batch_size=8, leaderboard_dir=None, device="cpu", jobs=1)
    plain = runner.run(RunConfig(**cfg, results_dir=str(tmp_path / "plain")), progress=False)
    seen = []

    def reversed_order(plan, jobs, pending):
        seen.append(list(pending))
        return list(reversed(pending))

    monkeypatch.setattr(runner, "unit_order", reversed_order)
    backwards = runner.run(RunConfig(**cfg, results_dir=str(tmp_path / "backwards")), progress=False)
    assert len(seen[0]) == 6
    a, b = _flags(plain), _flags(backwards)
    assert a.keys() == b.keys() == {"synthetic_shapes", "synthetic_colors"}
    for d in a:
        assert a[d].keys() == b[d].keys()
        for k in a[d]:
            assert np.array_equal(a[d][k], b[d][k]), (d, k)
