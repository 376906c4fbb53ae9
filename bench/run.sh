#!/usr/bin/env bash
# `make bench`: each Facet benchmark next to the same work in PyTorch (Python), alternating runs,
# and the ratio Facet / PyTorch of the median times (below 1.0: Facet is faster).
set -euo pipefail
build=${1:?usage: bench/run.sh BUILD_DIR PYTHON}
python=${2:?usage: bench/run.sh BUILD_DIR PYTHON}
rounds=${BENCH_ROUNDS:-3}
threads=${BENCH_THREADS:-$(nproc)}
args=(--batch 16 --size 112 --steps 20 --warmup 5 --threads "$threads")

echo "train step: ResNet-18, batch 16, 112x112, SGD, $threads threads, $rounds rounds (alternating)"
facet=() torch=()
for ((i = 0; i < rounds; i++)); do
  facet+=("$("$build/bench/train_step_bench" "${args[@]}" | "$python" -c 'import json,sys;print(json.load(sys.stdin)["ms_per_step"])')")
  torch+=("$("$python" bench/train_step.py "${args[@]}" | "$python" -c 'import json,sys;print(json.load(sys.stdin)["ms_per_step"])')")
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

echo
echo "data-parallel step: 2 Gloo ranks, all-reduce after backward vs overlapped with it"
"$build/bench/distributed_overlap_bench" --steps 20
