#!/usr/bin/env bash
# A/B timing of two `recur` binaries on one case, alternating, for changes smaller than the
# machine's drift (which moves one binary by 5-10% within minutes): each pair of runs is taken
# back to back, so the median of the per-pair ratios B/A cancels the drift that the two medians
# alone keep. Optional: never needed by the tests.
#
#   cp target/release/recur /tmp/recur-a   # before the change; build again after it
#   bash benches/compare/ab.sh 9 /tmp/recur-a target/release/recur --cell lstm --seq 400 \
#       --batch 8 --input 128 --hidden 128 --threads 1 --mode infer
#
# Prints each binary's median ms and the median ratio B/A (below 1: B is faster), with the
# number of pairs in which B was faster.
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: ab.sh PAIRS BIN_A BIN_B RECUR_BENCH_ARGS..." >&2; exit 2; }
pairs=$1 a=$2 b=$3
shift 3
# One case, one mode: exactly one line of JSON, its "ms".
ms() {
  local out
  out=$("$1" bench "${@:2}" --seconds "${SECONDS_EACH:-1}" --format json)
  [ "$(wc -l <<< "$out")" = 1 ] || { echo "ab.sh: give one case and one --mode" >&2; exit 2; }
  sed -n 's/.*"ms":\([0-9.]*\).*/\1/p' <<< "$out"
}
# Every other pair runs B first: the second run of a pair is not always the same binary (the
# same binary as A and B read B/A 1.012, B faster in 2 of 9 pairs, in fixed order).
ra=() rb=()
for i in $(seq "$pairs"); do
  if (( i % 2 )); then
    ra+=("$(ms "$a" "$@")")
    rb+=("$(ms "$b" "$@")")
  else
    rb+=("$(ms "$b" "$@")")
    ra+=("$(ms "$a" "$@")")
  fi
done
python3 - "${ra[*]}" "${rb[*]}" <<'PY'
import statistics as st, sys
a = [float(v) for v in sys.argv[1].split()]
b = [float(v) for v in sys.argv[2].split()]
r = [y / x for x, y in zip(a, b)]
print(f"A median {st.median(a):.4f} ms  B median {st.median(b):.4f} ms  "
      f"B/A median {st.median(r):.4f} (B faster in {sum(v < 1 for v in r)} of {len(r)} pairs)")
PY
