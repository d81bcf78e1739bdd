#!/usr/bin/env bash
# Usage: steps/prune_channels.sh --keep 0.6 [--conf conf.yaml] [--l1 1e-4] [--sparsity-epochs 2] [--epochs 2]
#          [--lr ""] [--min-layer-keep 0.1] [--device auto] <src-model-dir> <out-model-dir> [<train> <valid> <lang>]
# Structured channel pruning of a TDNN (network slimming, Liu et al. 2017): --sparsity-epochs of CTC
# training with an L1 penalty (--l1) on the hidden layers' batch-norm scales (<out-model-dir>/sparsity),
# then the channels with the smallest |gamma| are removed (one global threshold keeping --keep of the
# hidden channels, every layer keeping at least --min-layer-keep) and the layers rebuilt physically
# smaller (fewer FLOPs, faster), then --epochs of CTC fine-tuning (lr: --lr or train lr / 10).
# Plain TDNNs only: put prune_channels before svd / tt in a chain. Training needs <train> <valid> <lang>.
set -euo pipefail
echo "$0 $*"
conf=""; keep=""; l1=1e-4; sparsity_epochs=0; epochs=0; lr=""; min_layer_keep=0.1; device=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ -n "$keep" ] && { [ $# -eq 2 ] || [ $# -eq 5 ]; } || {
  echo "usage: $0 --keep FRACTION [options] <src-model-dir> <out-model-dir> [<train> <valid> <lang>]" >&2; exit 1; }
mkdir -p "$2/log"
exec asrcomp prune-channels --log-file "$2/log/prune_channels.log" --keep "$keep" ${conf:+--conf "$conf"} \
  --l1 "$l1" --sparsity-epochs "$sparsity_epochs" --epochs "$epochs" ${lr:+--lr "$lr"} \
  --min-layer-keep "$min_layer_keep" ${device:+--device "$device"} "$@"
