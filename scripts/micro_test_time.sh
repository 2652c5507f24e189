#!/usr/bin/env bash
# The test-time defenses and the newest fine-tuned ones on micro's quick subset (64 seeded images per task):
# bitdepth (the reference purification) and TTC (on the original micro CLIP and on TeCoA's weights), each
# adaptive (the default: BPDA + EOT, and TTC's gate-evasion attack) and non-adaptive (--non-adaptive: as
# published, never ranked); UCAT and CAW (fine-tuned on demand); then the audits.
#
#   bash scripts/micro_test_time.sh [extra zsrbench run options]
#
# Quick-subset entries are not ranked (the ranking needs the full sets under standard AutoAttack): with EOT over
# 10 draws and two counterattack steps per forward pass, TTC's adaptive PGD-100 costs about 0.5 s of one CPU core
# per image, so the full build is a job for many cores or a GPU. --resume continues an interrupted build.
set -euo pipefail
cd "$(dirname "$0")/.."
ZSRBENCH="${ZSRBENCH:-zsrbench}"
run() { echo "== $*"; "$ZSRBENCH" run --protocol micro --subset quick --quiet --resume --jobs 1 "$@"; }
run --defense bitdepth --attack pgd
run --defense bitdepth --attack pgd --non-adaptive
run --defense ucat --attack pgd
run --defense caw --attack pgd
run --defense ttc --attack pgd --non-adaptive
run --defense ttc --attack pgd --non-adaptive --set ttc.victim=tecoa
run --defense ttc --attack pgd
run --defense ttc --attack pgd --set ttc.victim=tecoa
run --defense ttc --attack ttc-gate   # the gate-evasion attack (the ranking takes the worst case over suites)
# the undefended models beside them, under the same suite and subset
run --defense clip --attack pgd
run --defense tecoa --attack pgd
# the audits (TTC's on two tasks: each of its checks runs through the counterattack with EOT)
for defense in bitdepth ucat caw; do
  echo "== $defense / audit"
  "$ZSRBENCH" audit --protocol micro --defense "$defense" --quiet || echo "audit of $defense failed (exit $?)"
done
for victim in clip tecoa; do
  echo "== ttc ($victim) / audit"
  "$ZSRBENCH" audit --protocol micro --defense ttc --set "ttc.victim=$victim" --datasets micro_color,micro_position \
    --n-samples 32 --quiet || echo "audit of ttc ($victim) failed (exit $?)"
done
"$ZSRBENCH" table --protocol micro --markdown
