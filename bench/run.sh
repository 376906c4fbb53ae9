#!/usr/bin/env bash
# `make bench`: each Facet benchmark next to the same work in PyTorch (Python), alternating runs,
# and the ratio Facet / PyTorch of the median times (below 1.0: Facet is faster).
set -euo pipefail
build=${1:?usage: bench/run.sh BUILD_DIR PYTHON}
python=${2:?usage: bench/run.sh BUILD_DIR PYTHON}
rounds=${BENCH_ROUNDS:-3}
threads=${BENCH_THREADS:-$(nproc)}
# ratio NAME ARGS...: alternating Facet / PyTorch runs of the train-step benchmark, median ratio.
ratio() {
  local label=$1; shift
  echo "train step: $label, $threads threads, $rounds rounds (alternating)"
  local facet=() torch=()
  for ((i = 0; i < rounds; i++)); do
    facet+=("$("$build/bench/train_step_bench" "$@" --threads "$threads" | "$python" -c 'import json,sys;print(json.load(sys.stdin)["ms_per_step"])')")
    torch+=("$("$python" bench/train_step.py "$@" --threads "$threads" | "$python" -c 'import json,sys;print(json.load(sys.stdin)["ms_per_step"])')")
  done
  "$python" - "${facet[*]}" "${torch[*]}" <<'PY'
import statistics, sys
f = [float(x) for x in sys.argv[1].split()]
t = [float(x) for x in sys.argv[2].split()]
mf, mt = statistics.median(f), statistics.median(t)
print(f"  facet   median {mf:8.2f} ms/step  (runs: {', '.join(f'{x:.1f}' for x in f)})")
print(f"  pytorch median {mt:8.2f} ms/step  (runs: {', '.join(f'{x:.1f}' for x in t)})")
print(f"  ratio facet/pytorch = {mf / mt:.3f}")
PY
}
# BENCH_ONLY=train|a3d|distributed|detection|lesion|loader|llm|vlm runs one part.
only=${BENCH_ONLY:-all}
if [[ $only == all || $only == a3d ]]; then
  echo "A3D DenseNet-121 + SATr backbone: forward + backward, 1 x 7 slices x 512 x 512, $threads threads, $rounds rounds (alternating)"
  facet=() torch=()
  for ((i = 0; i < rounds; i++)); do
    facet+=("$("$build/bench/a3d_satr_bench" --threads "$threads" | "$python" -c 'import json,sys;print(json.load(sys.stdin)["ms_per_step"])')")
    torch+=("$("$python" bench/a3d_satr.py --threads "$threads" | "$python" -c 'import json,sys;print(json.load(sys.stdin)["ms_per_step"])')")
  done
  "$python" - "${facet[*]}" "${torch[*]}" <<'PY'
import statistics, sys
f = [float(x) for x in sys.argv[1].split()]
t = [float(x) for x in sys.argv[2].split()]
mf, mt = statistics.median(f), statistics.median(t)
print(f"  facet   median {mf:8.1f} ms/step  (runs: {', '.join(f'{x:.0f}' for x in f)})")
print(f"  pytorch median {mt:8.1f} ms/step  (runs: {', '.join(f'{x:.0f}' for x in t)})")
print(f"  ratio facet/pytorch = {mf / mt:.3f}")
PY
  echo
fi
if [[ $only == all || $only == train ]]; then
  ratio "ResNet-18, batch 16, 112x112, SGD" --model resnet18 --batch 16 --size 112 --steps 20 --warmup 5
  ratio "ResNet-50, batch 8, 224x224, SGD" --model resnet50 --batch 8 --size 224 --steps 5 --warmup 2
  ratio "ViT-B/16, batch 8, 224x224, SGD" --model vit_b16 --batch 8 --size 224 --steps 5 --warmup 2
  echo
fi

if [[ $only == all || $only == distributed ]]; then
  echo "data-parallel step: 2 Gloo ranks, all-reduce after backward vs overlapped with it"
  "$build/bench/distributed_overlap_bench" --steps 20
  echo
fi

if [[ $only == all || $only == llm ]]; then
  echo "language model (~110M LLaMA): LoRA train step (batch 4 x 128 tokens) and greedy generation, $threads threads"
  for ((i = 0; i < rounds; i++)); do
    # Passive OpenMP waits on both sides: on a shared machine busy-waiting threads dominate the time.
    OMP_WAIT_POLICY=PASSIVE "$build/bench/llm_bench" --threads "$threads"
    OMP_WAIT_POLICY=PASSIVE "$python" bench/llm.py --threads "$threads"
  done
  echo
fi
if [[ $only == all || $only == vlm ]]; then
  echo "vision-language (small LLaVA): LoRA + projector train step (batch 2 x (64 text + 49 image tokens)) and greedy generation, $threads threads"
  for ((i = 0; i < rounds; i++)); do
    OMP_WAIT_POLICY=PASSIVE "$build/bench/vlm_bench" --threads "$threads"
    OMP_WAIT_POLICY=PASSIVE "$python" bench/vlm.py --threads "$threads"
  done
  echo
fi
# Detection: Facet's ATen-composed ops and Faster R-CNN R50-FPN step vs torchvision (same inputs).
if [[ $only == all || $only == detection ]]; then
  for args in "--what nms --boxes 12000 --steps 10 --warmup 2" "--what roi_align --rois 1024 --steps 5 --warmup 1" \
              "--what faster_rcnn --size 320 --batch 2 --steps 3 --warmup 1"; do
    f=$("$build/bench/detection_bench" $args --threads "$threads" | "$python" -c 'import json,sys;print(json.load(sys.stdin)["ms_per_step"])')
    t=$("$python" bench/detection.py $args --threads "$threads" 2>/dev/null | "$python" -c 'import json,sys;print(json.load(sys.stdin)["ms_per_step"])')
    echo "detection ($args): facet $f ms, torchvision $t ms, ratio $("$python" -c "print(f'{$f / $t:.2f}')")"
  done
  echo
fi
# Lesion-detection switches: the extra cost per step of BM, BMC, ABM and Mo-SCL (loss fluctuation, MC
# dropout) over the plain detector, in one run (no PyTorch side: the ratios are to the plain detector),
# and Mo-SCL's bookkeeping at DeepLesion's size.
if [[ $only == all || $only == lesion ]]; then
  out=$("$build/bench/lesion_switches_bench" --rounds "$rounds" --threads "$threads" 2>/dev/null)
  "$python" - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); v = r["variants"]; d = r["deeplesion_size"]
print(f"lesion-detection switches (small detector, {r['size']} px, {r['backbone']} backbone), ms/step and ratio to the plain detector:")
for name, x in v.items():
    ref = " (vs mask_plain)" if name == "bmc_abm" else ""
    print(f"  {name:<18} {x['ms']:8.1f} ms  x{x['ratio']:.2f}{ref}")
print(f"  Mo-SCL at 22,919 samples: feedback {d['feedback_us_per_step']:.0f} us/step, epoch order {d['epoch_order_ms']:.0f} ms, "
      f"state {d['state_json_mb']:.1f} MB")
PY
  echo
fi

[[ $only == all || $only == loader ]] || exit 0
workers=${BENCH_WORKERS:-$(nproc)}
data="$build/bench_data/bp4d"
if [ ! -d "$data/AUCoding" ]; then
  "$build/tools/cli/facet" data synth bp4d --out "$data" frames_per_sequence=30 size=256 > /dev/null
fi
echo "data loading: BP4D-format JPEGs (256 px) -> resize 200, random crop 176, flip, normalise; batch 32, $workers workers, $rounds rounds"
facet=() torch=()
for ((i = 0; i < rounds; i++)); do
  facet+=("$("$build/bench/loader_bench" --root "$data" --workers "$workers" | "$python" -c 'import json,sys;print(json.load(sys.stdin)["samples_per_s"])')")
  torch+=("$("$python" bench/loader.py --root "$data" --workers "$workers" | "$python" -c 'import json,sys;print(json.load(sys.stdin)["samples_per_s"])')")
done
"$python" - "${facet[*]}" "${torch[*]}" <<'PY'
import statistics, sys
f = [float(x) for x in sys.argv[1].split()]
t = [float(x) for x in sys.argv[2].split()]
mf, mt = statistics.median(f), statistics.median(t)
print(f"  facet   median {mf:8.1f} samples/s  (runs: {', '.join(f'{x:.0f}' for x in f)})")
print(f"  pytorch median {mt:8.1f} samples/s  (runs: {', '.join(f'{x:.0f}' for x in t)})")
print(f"  ratio facet/pytorch = {mf / mt:.2f}x the throughput")
PY

