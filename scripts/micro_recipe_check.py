#!/usr/bin/env python
"""Fine-tune defenses on the micro source task with one recipe and compare held-out PGD robustness.

    python scripts/micro_recipe_check.py --defenses tecoa,fare --set lr=5e-5 --set steps=300 [--out DIR]

Prints, per defense, the average normalised clean and PGD-robust accuracy over the held-out tasks (and the
undefended CLIP's), and the minimum normalised clean accuracy (a collapse shows as ≤ 0). The recipe given
with --set overrides the micro protocol's train_recipe for every defense alike.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from zsrbench.registry import PROTOCOLS, load_builtins
from zsrbench.evaluation.config import RunConfig
from zsrbench.evaluation.runner import run
from zsrbench.training import train_defense


def held_out_summary(results, protocol) -> dict[str, float]:
    held = [r.record for r in results if r.record.protocol.dataset != protocol.train_dataset]
    clean = [r.metrics.clean_normalised for r in held]
    rob = [r.metrics.robust_normalised for r in held]
    return {"clean": sum(clean) / len(clean), "robust": sum(rob) / len(rob), "min_clean": min(clean),
            "source_robust": next(r.record.metrics.robust_normalised for r in results
                                  if r.record.protocol.dataset == protocol.train_dataset)}


def parse(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--defenses", default="tecoa,fare")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE recipe override")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--attack", default="pgd")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    load_builtins()
    proto = PROTOCOLS.get("micro")
    recipe = dict(proto.train_recipe)
    recipe.update({k: parse(v) for k, v in (s.split("=", 1) for s in args.set)})
    out = args.out or Path(tempfile.mkdtemp(prefix="micro-recipe-"))
    rows = {}
    base = run(RunConfig(protocol="micro", defense="clip", attacks=(args.attack,), results_dir=str(out / "results"),
                         leaderboard_dir=None), progress=False)
    rows["clip"] = held_out_summary(base, proto)
    print("recipe:", json.dumps(recipe), flush=True)
    print("clip", json.dumps(rows["clip"]), flush=True)
    for d in args.defenses.split(","):
        t = time.perf_counter()
        res = train_defense(d, protocol=proto, out_dir=out / d, hparams=recipe, seed=args.seed, resume=False,
                            keep_checkpoints=False)
        train_s = time.perf_counter() - t
        ev = run(RunConfig(protocol="micro", defense=d, attacks=(args.attack,), checkpoint=str(res.out_dir),
                           results_dir=str(out / "results"), leaderboard_dir=None), progress=False)
        rows[d] = {**held_out_summary(ev, proto), "train_s": round(train_s, 1),
                   "final_loss": res.manifest["loss_curve"][-1]["loss"] if res.manifest.get("loss_curve") else None}
        print(d, json.dumps(rows[d]), flush=True)


if __name__ == "__main__":
    main()
