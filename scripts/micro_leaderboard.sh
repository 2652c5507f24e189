#!/usr/bin/env bash
# Fill leaderboards/micro/ with measured entries: every defense under pgd, cw, aa-lite and autoattack.
#
#   bash scripts/micro_leaderboard.sh [extra zsrbench run options]
#
# Trainable defenses are fine-tuned on demand with the micro protocol's shared recipe (cached after the first
# run), so the first pass of this script includes five fine-tunings; --resume skips evaluations already on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each run evaluates the seven tasks in parallel processes, one per core (`zsrbench run --jobs auto`).
# DEFENSES / ATTACKS may be narrowed from the environment, e.g. DEFENSES="fare tecoa" ATTACKS=pgd bash ...
read -r -a DEFENSES <<< "${DEFENSES:-clip tecoa pmg_aft fare tga_zsr comp_tga}"
read -r -a ATTACKS <<< "${ATTACKS:-pgd cw aa-lite autoattack}"
ZSRBENCH="${ZSRBENCH:-zsrbench}"  # the command, e.g. .venv/bin/zsrbench
for attack in "${ATTACKS[@]}"; do  # cheapest attacks first; standard AutoAttack last
  for defense in "${DEFENSES[@]}"; do
    echo "== $defense / $attack"
    "$ZSRBENCH" run --protocol micro --defense "$defense" --attack "$attack" --quiet --resume "$@"
  done
done
"$ZSRBENCH" table --protocol micro --markdown
