#!/usr/bin/env bash
# Usage: steps/compress_tt.sh [--conf conf.yaml] [--method tt|tucker|cp] [--layers REGEX] [--modes 3]
#          [--shapes OxOxO,IxIxI] [--rank R | --rel-error E] [--epochs N] [--lr X] [--device auto]
#          [--ranks 8,16,32 --graph-dir G --decode-sets "data/test" --decode-opts "..."]
#          <src-model-dir> <out-model-dir> <train-data> <valid-data> <lang-dir>
# Tensor-train matrix (or Tucker, CP) factorisation of hidden layers (default: every hidden
# Conv1d/Linear), initialised from the trained weights, then fine-tuning. --rank takes one
# rank or ranks joined by ':'. Sweep mode (--ranks a,b,c) as in steps/compress_svd.sh.
set -euo pipefail
echo "$0 $*"
conf=""; method=tt; layers=""; modes=3; shapes=""; rank=""; rel_error=""; epochs=""; lr=""; device=""
ranks=""; graph_dir=""; decode_sets=""; decode_opts=""; nj=2; cmd=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 5 ] || { echo "usage: $0 [options] <src-model-dir> <out-model-dir> <train> <valid> <lang>" >&2; exit 1; }
src=$1; out=$2
compress() {  # <out-dir> <rank options...>
  local dir=$1; shift
  if [ -f "$dir/model.yaml" ]; then echo "$0: $dir already complete"; return; fi
  mkdir -p "$dir/log"
  asrcomp compress tt --log-file "$dir/log/compress.log" --method "$method" --modes "$modes" \
    ${conf:+--conf "$conf"} ${layers:+--layers "$layers"} ${shapes:+--shapes "$shapes"} \
    ${epochs:+--epochs "$epochs"} ${lr:+--lr "$lr"} ${device:+--device "$device"} "$@" "$src" "$dir" "${args[@]:2}"
}
if [ -z "$ranks" ]; then
  compress "$out" ${rank:+--ranks "$rank"} ${rel_error:+--rel-error "$rel_error"}
  exit 0
fi
dirs=()
for r in ${ranks//,/ }; do compress "${out}_r${r//:/-}" --ranks "$r"; dirs+=("${out}_r${r//:/-}"); done
"$(dirname "$0")/sweep_table.sh" --graph-dir "$graph_dir" --decode-sets "$decode_sets" --decode-opts "$decode_opts" \
  --nj "$nj" --cmd "$cmd" "${out}_sweep" "$src" "${dirs[@]}"
