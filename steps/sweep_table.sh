#!/usr/bin/env bash
# Usage: steps/sweep_table.sh --graph-dir G --decode-sets "data/test [data/dev]" [--decode-opts "--beam 16"]
#          [--nj 2] [--cmd ""] <out-prefix> <model-dir>...
# Decodes each model dir on each set (skipping decodes finished with these options), then writes <out-prefix>.md
# (comparison table) and <out-prefix>.png (TLG %WER on the first set against bytes).
set -euo pipefail
echo "$0 $*"
graph_dir=""; decode_sets=""; decode_opts=""; nj=2; cmd=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -ge 2 ] && [ -n "$graph_dir" ] && [ -n "$decode_sets" ] || {
  echo "usage: $0 --graph-dir G --decode-sets SETS [options] <out-prefix> <model-dir>..." >&2; exit 1; }
prefix=$1; shift
for m in "$@"; do
  for s in $decode_sets; do
    # shellcheck disable=SC2086
    "$(dirname "$0")/decode.sh" --skip-done true --nj "$nj" --cmd "$cmd" --graph-dir "$graph_dir" $decode_opts "$m" "$s"
  done
done
set_name=$(basename "${decode_sets%% *}")
asrcomp sweep-plot --set "$set_name" --out "$prefix" "$@"
