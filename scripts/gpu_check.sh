#!/usr/bin/env bash
# The GPU check of the evaluation speed: `zsrbench bench` (the runner beside the papers' evaluation structure and
# the device's matmul peak) for PGD-100 at ε = step = 1/255, last iterate, and for standard AutoAttack at ε = 1/255
# (`--suite autoattack`: per stage, with the FLOP floor), each in fp32, tf32 and bf16; the micro CLIP on the same
# device; and an exact comparison of early-stopped and full PGD on the GPU. For one CUDA GPU and a prepared
# environment (zsrbench installed); a few minutes on a recent GPU, never more than TOTAL (7.5 min).
#
#   scripts/gpu_check.sh [OUTDIR]          # OUTDIR: $1, else $OUT, else ./gpu_check
#
# Environment (all optional):
#   MODEL=ViT-B-32  PRETRAINED=openai      the architecture and its open_clip weights. When the weights cannot be
#                                          loaded (offline, not in the cache) the check runs the same architecture
#                                          with random weights: the FLOPs, hence the throughput and the fraction of
#                                          peak, are the same; only the robust accuracies, and how soon the samples'
#                                          iterates cycle (the runner's early stop), depend on the weights.
#                                          PRETRAINED= (empty) asks for random weights.
#   N_IMAGES=256  BATCH=128  STEPS=100  EPS=1  STEP=1  PRECISIONS="fp32 tf32 bf16"
#   AA_IMAGES=64                           images of the AutoAttack measurement (each precision)
#   PYTHON=python                          the interpreter with zsrbench
#   SMOKE=1                                no GPU needed: --device cpu, zsr-tiny, a few images and steps (checks
#                                          that every invocation works)
#   LIMIT=150  TOTAL=450                   seconds allowed to each step and to the whole check (a step gets at most
#                                          what is left of TOTAL; one that fails or runs past it is reported)
# Outputs in OUTDIR: env.txt, bench_<precision>.json (the architecture), aa_<precision>.json (its AutoAttack),
# bench_micro_fp32.json (the micro CLIP),
# early_stop_exact.json, summary.txt (one line each), and each step's log. Exit status 1 if a step failed.
set -u -o pipefail

OUTDIR=${1:-${OUT:-gpu_check}}
PYTHON=${PYTHON:-python}
mkdir -p "$OUTDIR"
if [[ "${SMOKE:-0}" == 1 ]]; then
  DEVICE=cpu; MODEL=${MODEL:-zsr-tiny}; PRETRAINED=${PRETRAINED:-}
  N_IMAGES=${N_IMAGES:-4}; BATCH=${BATCH:-2}; STEPS=${STEPS:-2}; MICRO_N=4; AA_IMAGES=${AA_IMAGES:-2}
  AA_EXTRA=(--n-queries 10)
else
  DEVICE=cuda; MODEL=${MODEL:-ViT-B-32}; PRETRAINED=${PRETRAINED-openai}
  N_IMAGES=${N_IMAGES:-256}; BATCH=${BATCH:-128}; STEPS=${STEPS:-100}; MICRO_N=320; AA_IMAGES=${AA_IMAGES:-64}
  AA_EXTRA=()
fi
EPS=${EPS:-1}; STEP=${STEP:-1}; PRECISIONS=${PRECISIONS:-fp32 tf32 bf16}; LIMIT=${LIMIT:-150}; TOTAL=${TOTAL:-450}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} ZSRBENCH_JOBS=1
summary="$OUTDIR/summary.txt"
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }

# run NAME CMD...: CMD under a time limit (the smaller of LIMIT and what is left of TOTAL), output in NAME.log
run() {
  local name=$1 left=$((TOTAL - SECONDS))
  shift
  (( left < LIMIT )) || left=$LIMIT
  if (( left < 10 )); then note "$name: skipped, the check's ${TOTAL}s are spent"; return 1; fi
  timeout "$left" "$@" > "$OUTDIR/$name.log" 2>&1 && return 0
  note "$name: failed or ran past ${left}s (see $name.log)"
  return 1
}

# summarise FILE: one line of a bench JSON
summarise() {
  "$PYTHON" - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['precision']:>5} {r['model']} on {r['data']}: runner {r['runner_images_per_s']:.1f} img/s, papers' "
      f"structure {r['papers_images_per_s']:.1f} img/s (x{r['speedup_vs_papers']:.2f}; attack passes "
      f"{r['runner_attack_passes']} vs {r['papers_attack_passes']}), flags identical {r['flags_identical']} "
      f"({r['flags_differing']} differ); of the {r['precision']} peak {r['peak_tflops']:.1f} TFLOP/s: runner "
      f"{r['runner_fraction_of_peak']:.1%}, papers {r['papers_fraction_of_peak']:.1%}; peaks {r['peaks_tflops']}")
PY
}

# summarise_aa FILE: one line of an AutoAttack bench JSON
summarise_aa() {
  "$PYTHON" - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
stages = ", ".join(f"{s['stage']} {s['wall_s']:.1f}s {s['fraction_of_peak']:.0%}" for s in r["stages"])
print(f"{r['precision']:>5} AutoAttack {r['model']}: runner {r['runner_images_per_s']:.2f} img/s, papers' structure "
      f"{r['papers_images_per_s']:.2f} img/s (x{r['speedup_vs_papers']:.2f}), flags identical {r['flags_identical']}; "
      f"of the peak {r['peak_gflops'] / 1e3:.1f} TFLOP/s: runner {r['runner_fraction_of_peak']:.1%}; stages: {stages}")
PY
}

if [[ "$DEVICE" == cuda ]] && ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "no CUDA GPU visible; SMOKE=1 runs the CPU smoke mode" >&2
  exit 2
fi
{ date -u; "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  command -v nvidia-smi >/dev/null && nvidia-smi -L; git rev-parse HEAD 2>/dev/null; } > "$OUTDIR/env.txt" 2>&1

# 1. the weights: random weights (the same throughput) when they cannot be loaded
load='import sys; from zsrbench.models import build_clip; build_clip(sys.argv[1], sys.argv[2])'
if [[ -n "$PRETRAINED" ]] && ! run weights "$PYTHON" -c "$load" "$MODEL" "$PRETRAINED"; then
  note "weights $MODEL/$PRETRAINED not loadable (offline?): random weights instead, the same throughput"
  PRETRAINED=
fi
weights=()
[[ -n "$PRETRAINED" ]] && weights=(--pretrained "$PRETRAINED")
attack=(--device "$DEVICE" --steps "$STEPS" --eps "$EPS" --step "$STEP")
status=0

# 2. the architecture, once per precision
for p in $PRECISIONS; do
  if run "bench_$p" "$PYTHON" -m zsrbench.cli bench --model "$MODEL" ${weights[@]+"${weights[@]}"} "${attack[@]}" \
      --n-images "$N_IMAGES" --batch-size "$BATCH" --precision "$p" --out "$OUTDIR/bench_$p.json"; then
    note "$(summarise "$OUTDIR/bench_$p.json")"
  else
    status=1
  fi
done

# 2b. standard AutoAttack on the architecture, once per precision (the runner, the papers' structure, the floor)
for p in $PRECISIONS; do
  if run "aa_$p" "$PYTHON" -m zsrbench.cli bench --suite autoattack --model "$MODEL" ${weights[@]+"${weights[@]}"} \
      --device "$DEVICE" --eps "$EPS" --n-images "$AA_IMAGES" --batch-size "$BATCH" --precision "$p" \
      ${AA_EXTRA[@]+"${AA_EXTRA[@]}"} --out "$OUTDIR/aa_$p.json"; then
    note "$(summarise_aa "$OUTDIR/aa_$p.json")"
  else
    status=1
  fi
done

# 3. the micro CLIP (shipped weights, generated data: offline) on the same device, fp32
if run bench_micro_fp32 "$PYTHON" -m zsrbench.cli bench --defense clip --protocol micro "${attack[@]}" \
    --n-images "$MICRO_N" --out "$OUTDIR/bench_micro_fp32.json"; then
  note "$(summarise "$OUTDIR/bench_micro_fp32.json")"
else
  status=1
fi

# 4. early-stopped vs full PGD on the device, bit for bit (sub-batches, the device's kernels)
if run early_stop_exact "$PYTHON" - "$MODEL" "$PRETRAINED" "$DEVICE" "$STEPS" "$OUTDIR/early_stop_exact.json" <<'PY'
import json, sys, torch
from zsrbench.attacks.pgd import pgd_attack
from zsrbench.models import build_clip, make_classifier
model, pretrained, device, steps, out = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4]), sys.argv[5]
torch.manual_seed(0)
parts = build_clip(model, pretrained, device=device)
clf, _ = make_classifier(parts, [[f"a photo of a class {i}"] for i in range(10)], device=device, cache=False)
x = torch.rand(32, 3, parts.image_size, parts.image_size, generator=torch.Generator().manual_seed(0)).to(device)
with torch.no_grad():
    y = clf(x).argmax(1)
res = {}
for step in (1.0, 0.25):
    kw = dict(eps=1 / 255, step=step / 255, steps=steps, seed=1)
    full, early = pgd_attack(clf, x, y, early_stop=False, **kw), pgd_attack(clf, x, y, **kw)
    res[f"step {step:g}/255"] = {"x_adv_identical": torch.equal(full.x_adv, early.x_adv),
                                 "success_identical": torch.equal(full.success, early.success),
                                 "early_stop": early.info["early_stop"], "passes_run": early.info["passes_run"],
                                 "passes_full": early.info["passes_full"]}
json.dump(res, open(out, "w"), indent=2)
print(json.dumps(res))
PY
then
  note "early stop vs full PGD on $DEVICE: $(tail -n 1 "$OUTDIR/early_stop_exact.log")"
else
  status=1
fi
echo "outputs in $OUTDIR (${SECONDS}s)" >&2
exit "$status"
