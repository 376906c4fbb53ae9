#!/usr/bin/env bash
# Runs a libFuzzer binary for a bounded time over a corpus seeded from the golden fixtures, with the
# dictionary tests/fuzz/<fuzzer name>.dict when there is one.
# usage: run_fuzzer.sh FUZZER SEED_DIR CORPUS_DIR SECONDS
set -euo pipefail
fuzzer=$1 seeds=$2 corpus=$3 seconds=$4
mkdir -p "$corpus"
find "$seeds" -name '*.safetensors' -exec cp -f {} "$corpus"/ \;
dict="$(dirname "$0")/$(basename "$fuzzer").dict"
args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
[[ -f $dict ]] && args+=(-dict="$dict")
exec "$fuzzer" "${args[@]}" "$corpus"
