#!/usr/bin/env bash
# Peak memory (max RSS, /usr/bin/time) of one training step, recur beside PyTorch, on the
# reference cases. Optional: never needed by the tests; needs ../shared/anchors/setup.sh once.
#
#   bash benches/compare/memory.sh        # from the repository root
#
# recur: the whole `recur bench --mode train` process (weights, packed weights, workspace,
# outputs, gradients), and the same with `--mode recompute` (Mode::TrainingRecompute: gate
# activations recomputed in the backward instead of saved). PyTorch: the process of memory_torch.py, and of the same script with
# `setup` (Python, the torch library, the model and the input): the difference is what the
# training step itself takes.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${ANCHOR_VENV:-/tmp/anchor-venv}/bin/python
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release --quiet
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
mib() { echo "scale=1; $1 / 1024" | bc; }
echo "| case (T, B, I=H) | recur MiB | recur recompute MiB | PyTorch MiB | PyTorch baseline MiB | PyTorch step MiB |"
echo "|---|---|---|---|---|---|"
for c in "lstm 100 1 256" "lstm 100 16 512" "lstm 100 64 512" "lstm 50 64 1024" \
         "gru 100 16 512" "gru 100 64 512" "rnn 100 64 512"; do
  set -- $c
  r=$(rss target/release/recur bench --cell "$1" --seq "$2" --batch "$3" --input "$4" \
      --hidden "$4" --threads 1 --mode train --seconds 0.01)
  q=$(rss target/release/recur bench --cell "$1" --seq "$2" --batch "$3" --input "$4" \
      --hidden "$4" --threads 1 --mode recompute --seconds 0.01)
  t=$(rss "$py" benches/compare/memory_torch.py "$1" "$2" "$3" "$4" "$4" train)
  s=$(rss "$py" benches/compare/memory_torch.py "$1" "$2" "$3" "$4" "$4" setup)
  echo "| ${1^^} $2, $3, $4 | $(mib "$r") | $(mib "$q") | $(mib "$t") | $(mib "$s") | $(mib $((t - s))) |"
done
