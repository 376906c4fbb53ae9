#!/usr/bin/env bash
# `make gpu-check`: everything Facet claims about the GPU, run on the GPU of this machine, in one
# table. Builds the CUDA configuration (the normal build: the CUDA wheel's LibTorch), then, when
# LibTorch sees a GPU, runs four stages (--only picks some):
#   tests       facet_gpu_tests: device placement of every model, loss and metric; fp16 autocast with
#               the gradient scaler killed and resumed; bf16 autocast; pinned memory and non-blocking
#               copies; the GPU's random stream after a resume (tests/gpu/);
#   two-ranks   two ranks on one GPU: NCCL where it allows it, else Gloo over CUDA tensors (the output
#               says which);
#   train-step  the train-step benchmark against PyTorch on the GPU: ResNet-50, ViT-B/16 and the demo
#               CNN under bf16 autocast — default, tuned, CUDA graphs, and against torch.compile —
#               images/s and the ratio (bench/train_step.{cpp,py}, alternating runs, median);
#   emola       the EmoLA training step at 7B with LoRA: tokens/s and MFU (bench/emola_step.cpp).
# Without a GPU it builds, says so and exits 0. Budget (estimated, never run: no GPU yet): about 11
# minutes on one H100 once built at the default 2 rounds, torch.compile of ResNet-50 and the 7B EmoLA
# step included; --rounds 1 halves the train-step part. Each stage has its own time limit (tests 6
# minutes, two-ranks 4, each train-step run 5, emola 8).
#
#   tools/gpu_check.sh [--build DIR (from the repository root)] [--python PY] [--jobs N] [--rounds N] [--no-build]
#                      [--only STAGE[,STAGE...]] [--bin-dir DIR] [--out DIR] [--dry-run]
#
# --only runs only the named stages (tests, two-ranks, train-step, emola), so that a machine lent for
# a few minutes at a time (at most 10 per command) can run them in separate calls: the table then
# holds the stages run. --bin-dir DIR takes the four executables (facet, facet_gpu_tests,
# train_step_bench, emola_step_bench) from the one folder DIR instead of BUILD, and implies --no-build:
# that is how a GPU machine that cannot build Facet runs binaries built elsewhere
# (tools/gpu_bundle.sh makes such a folder, with the libraries they need, and its run_gpu_check.sh
# calls this script). --dry-run prints what would run and the table's layout without building or
# running anything (FACET_GPU_CHECK_ASSUME=gpu|none decides the GPU question there; tests/gpu runs it
# so the script does not go stale). Results and the table go to BUILD/gpu_check/ (--out DIR: DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

build=build
python=${FACET_VENV:+$FACET_VENV/bin/python}
python=${python:-python3}
jobs=$(nproc)
rounds=${BENCH_ROUNDS:-2}
do_build=1
dry_run=0
bin_dir=
out=
only=
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --only) only=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; do_build=0; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

out=${out:-$build/gpu_check}
targets=(facet facet_gpu_tests train_step_bench emola_step_bench)
if [ -n "$bin_dir" ]; then
  facet_exe=$bin_dir/facet tests_exe=$bin_dir/facet_gpu_tests
  train_step_exe=$bin_dir/train_step_bench emola_step_exe=$bin_dir/emola_step_bench
else
  facet_exe=$build/tools/cli/facet tests_exe=$build/tests/facet_gpu_tests
  train_step_exe=$build/bench/train_step_bench emola_step_exe=$build/bench/emola_step_bench
fi
stages=(tests two-ranks train-step emola)
declare -A selected=()
IFS=',' read -r -a picked <<< "${only:-$(IFS=,; echo "${stages[*]}")}"
for s in "${picked[@]}"; do
  case " ${stages[*]} " in
    *" $s "*) selected[$s]=1 ;;
    *) echo "gpu_check.sh: unknown stage '$s' for --only (stages: ${stages[*]})" >&2; exit 2 ;;
  esac
done
stage() { [ -n "${selected[$1]:-}" ]; }  # true when the stage named $1 runs
if [ -n "$bin_dir" ] && ((!dry_run)); then
  for exe in "$facet_exe" "$tests_exe" "$train_step_exe" "$emola_step_exe"; do
    [ -x "$exe" ] || { echo "gpu_check.sh: --bin-dir $bin_dir has no executable $(basename "$exe")" >&2; exit 2; }
  done
fi
# label|both sides' flags|Facet's extra flags|PyTorch's extra flags. The tuned rows give both sides the
# same tuning (channels-last, fused SGD, cuDNN benchmark mode): Facet's config switches
# train.channels_last, optim.fused (on by default) and train.cudnn_benchmark. The graph rows replay
# forward and backward as CUDA graphs on both sides (train.cuda_graph; make_graphed_callables); the
# compile rows put Facet's best (tuned + graphs) against torch.compile of the tuned PyTorch model.
tuned="--channels-last 1 --cudnn-benchmark 1"
benches=("ResNet-50 bf16, batch 64, 224 px|--model resnet50 --batch 64 --size 224 --steps 30 --warmup 10||"
         "ResNet-50 bf16, batch 64, tuned both sides|--model resnet50 --batch 64 --size 224 --steps 30 --warmup 10 $tuned||--fused 1"
         "ResNet-50 bf16, batch 64, tuned + CUDA graphs both sides|--model resnet50 --batch 64 --size 224 --steps 30 --warmup 10 $tuned --cuda-graph 1||--fused 1"
         "ResNet-50 bf16, batch 64: Facet tuned + graphs vs torch.compile|--model resnet50 --batch 64 --size 224 --steps 30 --warmup 10 $tuned|--cuda-graph 1|--fused 1 --compile 1"
         "ViT-B/16 bf16, batch 64, 224 px|--model vit_b16 --batch 64 --size 224 --steps 30 --warmup 10||"
         "ViT-B/16 bf16, batch 64, fused SGD both sides|--model vit_b16 --batch 64 --size 224 --steps 30 --warmup 10||--fused 1"
         "demo CNN bf16, batch 32, 32 px (launch-bound)|--model simple_cnn --batch 32 --size 32 --steps 200 --warmup 20||--fused 1"
         "demo CNN bf16, batch 32, CUDA graphs both sides|--model simple_cnn --batch 32 --size 32 --steps 200 --warmup 20 --cuda-graph 1||--fused 1")

run() {  # prints the command; runs it unless --dry-run
  echo "+ $*"
  ((dry_run)) || "$@"
}
run_logged() {  # run, with the output also kept in the file $1
  local log=$1; shift
  echo "+ $* (log: $log)"
  ((dry_run)) || "$@" 2>&1 | tee "$log"
}

start=$SECONDS
rows=()  # check <TAB> result <TAB> figure
row() { rows+=("$(printf '%s\t%s\t%s' "$1" "$2" "$3")"); }

# --- build ------------------------------------------------------------------------------------------
if ((do_build)); then
  t=$SECONDS
  if [ ! -f "$build/build.ninja" ] && ((!dry_run)); then
    echo "gpu_check.sh: $build is not configured; run \`make configure\` (or \`make gpu-check\`, which does)" >&2
    exit 2
  fi
  run cmake --build "$build" -j "$jobs" --target "${targets[@]}"
  row "build (${targets[*]})" "$( ((dry_run)) && echo dry-run || echo ok)" "$((SECONDS - t)) s"
fi

# --- is there a GPU? ----------------------------------------------------------------------------------
has_gpu() {
  case ${FACET_GPU_CHECK_ASSUME:-} in
    gpu) return 0 ;;
    none) return 1 ;;
  esac
  # LibTorch's own answer (what the tests will see), else the driver's.
  if [ -x "$facet_exe" ]; then
    "$facet_exe" info 2>/dev/null | grep -q '^CUDA *available'
  else
    command -v nvidia-smi > /dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'
  fi
}
if ! has_gpu; then
  cuda_line=$([ -x "$facet_exe" ] && "$facet_exe" info 2>/dev/null | grep '^CUDA' | tr -s ' ' || true)
  if ((do_build)); then what="built the CUDA configuration, nothing run"; else what="nothing run"; fi
  echo "no GPU: $what${cuda_line:+ (facet info: $cuda_line)}"
  exit 0
fi
if ((!dry_run)) && [ -x "$facet_exe" ]; then "$facet_exe" info; fi
mkdir -p "$out"
echo "stages: ${picked[*]} (results in $out)"

# --- 1. the GPU tests ----------------------------------------------------------------------------------
failed=0
tests_json=
if stage tests; then
  t=$SECONDS
  tests_json=$out/gpu_tests.json
  rm -f "$tests_json"
  if ! run_logged "$out/gpu_tests.log" timeout 360 "$tests_exe" --gtest_filter='-GpuTwoRanks.*:GpuCheckScript.*:GpuPlacementTable.*' \
      --gtest_output="json:$out/gpu_tests.json"; then failed=1; fi
  row "facet_gpu_tests (total)" "$( ((dry_run)) && echo dry-run || { ((failed)) && echo FAIL || echo ok; })" "$((SECONDS - t)) s"
fi

# --- 2. two ranks on one GPU -------------------------------------------------------------------------
if stage two-ranks; then
  t=$SECONDS
  rm -f "$out/two_ranks.txt" "$out/two_ranks.json"
  if FACET_GPU_CHECK_OUT="$out" run_logged "$out/two_ranks.log" timeout 240 "$tests_exe" --gtest_filter='GpuTwoRanks.CollectivesOnOneGpu' \
      --gtest_output="json:$out/two_ranks.json"; then result=ok; else result=FAIL; failed=1; fi
  ((dry_run)) && result=dry-run
  row "two ranks on one GPU: $(cat "$out/two_ranks.txt" 2>/dev/null | head -1 || true)" "$result" "$((SECONDS - t)) s"
fi

# --- 3. train step against PyTorch ---------------------------------------------------------------------
images_per_s() { "$python" -c 'import json,sys;print(json.load(sys.stdin)["images_per_s"])'; }
stage train-step || benches=()
for b in "${benches[@]}"; do
  IFS='|' read -r label common facet_extra torch_extra <<< "$b"
  read -r -a args <<< "$common"
  read -r -a fargs <<< "$facet_extra"
  read -r -a targs <<< "$torch_extra"
  facet=() torch=()
  for ((i = 0; i < rounds; i++)); do
    if ((dry_run)); then
      run "$train_step_exe" "${args[@]}" "${fargs[@]}" --device cuda --dtype bf16
      run "$python" bench/train_step.py "${args[@]}" "${targs[@]}" --device cuda --dtype bf16
      facet+=(0) torch+=(0)
      continue
    fi
    # A hang or a crash of either side fails the row, never the whole check.
    if f=$(timeout 300 "$train_step_exe" "${args[@]}" "${fargs[@]}" --device cuda --dtype bf16 | images_per_s) &&
       p=$(timeout 300 "$python" bench/train_step.py "${args[@]}" "${targs[@]}" --device cuda --dtype bf16 | images_per_s); then
      facet+=("$f") torch+=("$p")
    else
      echo "gpu_check.sh: the train-step benchmark failed ($label, round $((i + 1)))" >&2
      failed=1
    fi
  done
  if ((${#facet[@]} == 0)); then row "train step $label" FAIL "-"; continue; fi
  result=ok
  ((dry_run)) && result=dry-run
  ((${#facet[@]} == rounds)) || result=FAIL
  figure=$("$python" - "${facet[*]}" "${torch[*]}" <<'PY'
import statistics, sys
f = [float(x) for x in sys.argv[1].split()]
t = [float(x) for x in sys.argv[2].split()]
mf, mt = statistics.median(f), statistics.median(t)
ratio = f"{mf / mt:.2f}" if mt else "-"
print(f"facet {mf:.0f} img/s, pytorch {mt:.0f} img/s, facet/pytorch throughput {ratio} ({len(f)} runs each)")
PY
)
  row "train step $label" "$result" "$figure"
done

# --- 4. the EmoLA step at 7B ----------------------------------------------------------------------------
# LLaVA-1.5-7B + the prior token, LoRA r 128 on all seven projections, bf16, checkpointing, batch 16
# (bench/emola_step.cpp): Facet alone (tokens/s and model-FLOPs utilisation against 989 TFLOP/s).
if stage emola; then
  result=ok figure="-"
  if run_logged "$out/emola_step.log" timeout 480 "$emola_step_exe" --device cuda; then
    ((dry_run)) || figure=$("$python" - "$out/emola_step.log" <<'PY'
import json, sys
d = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"impl"')][-1]
print(f"{d['tokens_per_s']:.0f} tokens/s, MFU {d['mfu']:.3f}, {d['ms_per_step']:.0f} ms/step "
      f"(batch {d['batch']} x {d['sequence']} tokens, {d['trainable']:,} trainable)")
PY
)
  else
    result=FAIL failed=1
  fi
  ((dry_run)) && result=dry-run
  row "EmoLA 7B LoRA step (bf16, batch 16)" "$result" "$figure"
fi

# --- the table -----------------------------------------------------------------------------------------
printf '%s\n' "${rows[@]}" > "$out/rows.tsv"
"$python" - "$out/rows.tsv" "$tests_json" "$((SECONDS - start))" > "$out/summary.txt" <<'PY'
import json, os, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
# Each GPU test as its own row, after the build row.
tests = []
if sys.argv[2] and os.path.exists(sys.argv[2]):
    for suite in json.load(open(sys.argv[2])).get("testsuites", []):
        for t in suite.get("testsuite", []):
            name = f"  {suite['name']}.{t['name']}".replace("Models/GpuPlacement.TrainsEvaluatesAndBackpropagatesOnTheGpu/", "placement: ")
            result = "FAIL" if t.get("failures") else ("skipped" if t.get("result") == "SKIPPED" else "ok")
            tests.append([name, result, t.get("time", "")])
at = next((i for i, r in enumerate(rows) if r[0].startswith("facet_gpu_tests")), len(rows))
if not tests and at < len(rows) and rows[at][1] == "FAIL":
    tests = [["  (no per-test results: the executable crashed; see gpu_tests.log)", "FAIL", ""]]
rows[at + 1:at + 1] = tests
rows.append(["total", "", f"{sys.argv[3]} s"])
w0 = max(len(r[0]) for r in rows)
w1 = max(6, max(len(r[1]) for r in rows))
print(f"{'check':<{w0}}  {'result':<{w1}}  seconds / figure")
print(f"{'-' * w0}  {'-' * w1}  {'-' * 16}")
for r in rows:
    print(f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}")
PY
echo
cat "$out/summary.txt"
echo "(table written to $out/summary.txt)"
exit "$failed"
