#!/usr/bin/env bash
# Fill leaderboards/micro/ with measured, audited entries on the protocol's full test sets (320 per task):
# every defense under each attack suite, then `zsrbench audit` of each defense (exit 1 = a check failed).
#
#   bash scripts/micro_leaderboard.sh [extra zsrbench run options]
#
# Trainable defenses are fine-tuned on demand with the micro protocol's shared recipe (cached after the first
# run); --resume skips datasets already evaluated with the same settings, so an interrupted build continues.
# The ranking suite of micro is the standard AutoAttack: it is what costs (about 3.5 s of one CPU core per image
# that survives it), so run the full build on a machine with many cores or a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
# DEFENSES / ATTACKS may be narrowed from the environment, e.g. DEFENSES="fare tecoa" ATTACKS=pgd bash ...
read -r -a DEFENSES <<< "${DEFENSES:-clip tecoa pmg_aft fare tga_zsr comp_tga}"
read -r -a ATTACKS <<< "${ATTACKS:-pgd cw aa-lite autoattack}"
ZSRBENCH="${ZSRBENCH:-zsrbench}"  # the command, e.g. .venv/bin/zsrbench
for attack in "${ATTACKS[@]}"; do  # cheapest attacks first; standard AutoAttack last
  for defense in "${DEFENSES[@]}"; do
    echo "== $defense / $attack"
    "$ZSRBENCH" run --protocol micro --subset full --defense "$defense" --attack "$attack" --quiet --resume "$@"
  done
done
# the audits read the AutoAttack flags recorded above, so they come last
for defense in "${DEFENSES[@]}"; do
  echo "== $defense / audit"
  "$ZSRBENCH" audit --protocol micro --defense "$defense" --quiet || echo "audit of $defense failed (exit $?)"
done
"$ZSRBENCH" table --protocol micro --markdown
