#!/usr/bin/env bash
# Usage: steps/peer.sh --kind fp16|int8 [--zstd-level 19] <src-model-dir> <out-model-dir>
# The peers of steps/pack.sh, what a user gets in two lines: every floating tensor as float16
# (fp16), or every weight matrix as int8 per output channel with float32 scales (int8), then
# torch.save + zstd. Writes <out-model-dir>/model.<kind>.zst (its size: packed_bytes in
# model.yaml, the bytes of the comparison table) and a decodable model dir (final.pt holds the
# dequantised weights; decode it with steps/decode.sh like any model dir).
set -euo pipefail
echo "$0 $*"
kind=""; zstd_level=19
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 2 ] && [ -n "$kind" ] || { echo "usage: $0 --kind fp16|int8 [--zstd-level 19] <src-model-dir> <out-model-dir>" >&2; exit 1; }
mkdir -p "$2/log"
exec asrcomp peer --log-file "$2/log/peer.log" --kind "$kind" --zstd-level "$zstd_level" "$1" "$2"
