#!/usr/bin/env bash
# Usage: steps/pack.sh [--conf conf.yaml] [--bits 5] [--bits-output 4] [--prune-sparsity 0.0]
#                      [--prune-epochs 0] [--finetune-epochs 0] [--lr ""] [--coder huffman|ans] [--device auto]
#                      <src-model-dir> <out-model-dir> [<train-data> <valid-data> <lang-dir>]
# Deep Compression: optional magnitude pruning (+ retraining), k-means weight sharing
# (+ centroid fine-tuning), Huffman coding (or ANS: --coder ans); writes <out-model-dir>/model.acz, pack_report.tsv
# (the sizes with both coders) and a decodable model dir. Options left empty come from the config's 'pack:' section.
# --bits takes 5 or 'output=4,default=5' (regex on tensor names = bits, 1-16).
set -euo pipefail
echo "$0 $*"
conf=""; bits=""; bits_output=""; prune_sparsity=""; prune_epochs=""; finetune_epochs=""; lr=""; device=""; coder=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 2 ] || [ $# -eq 5 ] || {
  echo "usage: $0 [options] <src-model-dir> <out-model-dir> [<train-data> <valid-data> <lang-dir>]" >&2; exit 1; }
dir=$2
mkdir -p "$dir/log"
exec asrcomp pack --log-file "$dir/log/pack.log" ${conf:+--conf "$conf"} ${bits:+--bits "$bits"} \
  ${bits_output:+--bits-output "$bits_output"} ${prune_sparsity:+--prune-sparsity "$prune_sparsity"} \
  ${prune_epochs:+--prune-epochs "$prune_epochs"} ${finetune_epochs:+--finetune-epochs "$finetune_epochs"} \
  ${lr:+--lr "$lr"} ${coder:+--coder "$coder"} ${device:+--device "$device"} "$@"
