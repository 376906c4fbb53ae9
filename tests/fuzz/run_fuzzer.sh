#!/usr/bin/env bash
# Runs a libFuzzer binary for a bounded time over a corpus seeded from the golden fixtures (the
# files matching PATTERN, or any of several space-separated patterns), with the dictionary
# tests/fuzz/<fuzzer name>.dict and the flags in tests/fuzz/<fuzzer name>.options when there are.
# usage: run_fuzzer.sh FUZZER SEED_DIR PATTERN CORPUS_DIR SECONDS
set -euo pipefail
fuzzer=$1 seeds=$2 pattern=$3 corpus=$4 seconds=$5
mkdir -p "$corpus"
set -f  # the patterns are find's, not the shell's
for p in $pattern; do find "$seeds" -name "$p" -exec cp -f {} "$corpus"/ \;; done
set +f
dict="$(dirname "$0")/$(basename "$fuzzer").dict"
args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
[[ -f $dict ]] && args+=(-dict="$dict")
# tests/fuzz/<fuzzer name>.options: extra libFuzzer flags, one a line (# comments), appended last.
options="$(dirname "$0")/$(basename "$fuzzer").options"
if [[ -f $options ]]; then while read -r line; do [[ -z $line || $line == \#* ]] || args+=("$line"); done < "$options"; fi
exec "$fuzzer" "${args[@]}" "$corpus"
