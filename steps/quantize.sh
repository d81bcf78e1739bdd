#!/usr/bin/env bash
# Usage: steps/quantize.sh --bits 8|4|2|1 [--conf conf.yaml] [--keep REGEX|none] [--epochs 0] [--lr ""]
#                          [--zstd-level 19] [--device auto] <src-model-dir> <out-model-dir> [<train> <valid> <lang>]
# Low-bit linear quantisation beside pack's k-means: every weight matrix as int8 or int4 per output
# channel, ternary (--bits 2, TTQ/TWN: three values per tensor) or binary (--bits 1, XNOR-Net: sign x
# channel mean; with 2 and 1 the first and last layer stay int8 unless --keep none), bit-packed, then
# torch.save + zstd: <out-model-dir>/model.<kind>.zst (its size: packed_bytes in model.yaml) and a
# decodable model dir (final.pt holds the dequantised weights). --epochs N > 0: N epochs of
# straight-through-estimator fine-tuning first (needs <train> <valid> <lang>; lr: --lr or train lr / 10).
set -euo pipefail
echo "$0 $*"
conf=""; bits=""; keep=""; epochs=0; lr=""; zstd_level=19; device=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ -n "$bits" ] && { [ $# -eq 2 ] || [ $# -eq 5 ]; } || {
  echo "usage: $0 --bits 8|4|2|1 [options] <src-model-dir> <out-model-dir> [<train> <valid> <lang>]" >&2; exit 1; }
mkdir -p "$2/log"
exec asrcomp quantize --log-file "$2/log/quantize.log" --bits "$bits" ${conf:+--conf "$conf"} \
  ${keep:+--keep "$keep"} --epochs "$epochs" ${lr:+--lr "$lr"} --zstd-level "$zstd_level" \
  ${device:+--device "$device"} "$@"
