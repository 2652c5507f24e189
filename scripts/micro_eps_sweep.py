#!/usr/bin/env python
"""Measure undefended micro CLIP under PGD at each ε of the micro sweep, and apply the rule that fixes ε.

Rule (zsrbench.micro.protocol): the protocol's ε is the smallest ε in {1, 2, 4, 8}/255 at which PGD
removes at least half of the undefended model's average normalised clean zero-shot accuracy over the
held-out tasks, i.e. mean_t norm_robust_t(ε) ≤ ½ · mean_t norm_clean_t.

    python scripts/micro_eps_sweep.py                 # the shipped weights, the protocol's PGD settings,
                                                      # on the 400-scene check split of every task
    python scripts/micro_eps_sweep.py --model local-dir:/path --steps 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zsrbench.attacks.pgd import pgd_attack
from zsrbench.micro import tasks as T
from zsrbench.models.shipped import local_dir_name
from zsrbench.micro.protocol import EPS_SWEEP, PGD_STEP_FRACTION, PGD_STEPS, choose_eps
from zsrbench.models.clip import build_clip
from zsrbench.models.classifier import make_classifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--model", default=None, help="model name for build_clip (default: the shipped micro CLIP)")
    ap.add_argument("--steps", type=int, default=PGD_STEPS)
    ap.add_argument("--step-fraction", type=float, default=PGD_STEP_FRACTION, help="PGD step as a fraction of ε")
    ap.add_argument("--eps", type=float, nargs="*", default=list(EPS_SWEEP), help="ε values in units of 1/255")
    ap.add_argument("--split", default="check", choices=("check", "test"),
                    help="check: 400 scenes per task, outside the protocol (default; the rule's measurement); "
                         "test: the protocol's 64-scene test sets")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="write the table as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    parts = build_clip(args.model or local_dir_name())
    rows: dict[str, dict[str, float]] = {}
    t0 = time.time()
    for name, task in T.TASKS.items():
        clf, _ = make_classifier(parts, [[p] for p in task.prompts()], cache=False)
        images, labels = T.generate_split(name, args.split)
        x = images.float() / 255
        c = len(task.classnames)
        with torch.no_grad():
            clean = clf(x).argmax(1) == labels
        row = {"classes": c, "clean": T.normalised(float(clean.float().mean()), c)}
        for e in args.eps:
            eps = e / 255
            out = pgd_attack(clf, x, labels, eps=eps, step=eps * args.step_fraction, steps=args.steps, seed=0)
            robust = clean & ~out.success
            row[f"{e:g}"] = T.normalised(float(robust.float().mean()), c)
        rows[name] = row
        print(f"{name:18s} " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
              flush=True)

    held = [n for n in T.HELD_OUT]
    mean_clean = sum(rows[n]["clean"] for n in held) / len(held)
    means = {f"{e:g}": sum(rows[n][f"{e:g}"] for n in held) / len(held) for e in args.eps}
    chosen = choose_eps(mean_clean, {float(k): v for k, v in means.items()})

    header = "| task | classes | clean | " + " | ".join(f"PGD ε={e:g}/255" for e in args.eps) + " |"
    print("\nnormalised accuracy (acc − chance)/(1 − chance) on the %s split (%d scenes per task); "
          "PGD-%d, step ε·%g, random start, 1 restart, last iterate\n"
          % (args.split, len(labels), args.steps, args.step_fraction))
    print(header)
    print("|" + "---|" * (3 + len(args.eps)))
    for n, r in rows.items():
        print(f"| {n} | {r['classes']} | {r['clean']:.3f} | " + " | ".join(f"{r[f'{e:g}']:.3f}" for e in args.eps) + " |")
    print(f"| **held-out mean** | | {mean_clean:.3f} | " + " | ".join(f"{means[f'{e:g}']:.3f}" for e in args.eps) + " |")
    print(f"\nrule: smallest ε with held-out mean robust ≤ ½ · {mean_clean:.3f} = {mean_clean / 2:.3f} → ε = {chosen:g}/255"
          f"   ({time.time() - t0:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "n_per_task": len(labels), "rows": rows, "held_out_mean_clean": mean_clean, "held_out_mean_robust": means,
                                         "chosen_eps": chosen, "pgd_steps": args.steps,
                                         "step_fraction": args.step_fraction}, indent=2))


if __name__ == "__main__":
    main()
