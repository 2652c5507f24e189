#!/usr/bin/env bash
# Fill leaderboards/micro/ with measured entries: every defense under pgd, cw, aa-lite and autoattack.
#
#   bash scripts/micro_leaderboard.sh [extra zsrbench run options]
#
# Trainable defenses are fine-tuned on demand with the micro protocol's shared recipe (cached after the first
# run), so the first pass of this script includes five fine-tunings; --resume skips evaluations already on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
DEFENSES=(clip tecoa pmg_aft fare tga_zsr comp_tga)
ATTACKS=(pgd cw aa-lite autoattack)
for attack in "${ATTACKS[@]}"; do  # cheapest attacks first; standard AutoAttack last
  for defense in "${DEFENSES[@]}"; do
    echo "== $defense / $attack"
    zsrbench run --protocol micro --defense "$defense" --attack "$attack" --quiet --resume "$@"
  done
done
zsrbench table --protocol micro --markdown
