#!/usr/bin/env bash
# Usage: steps/export_onnx.sh [--cmvn global|utterance] [--cmvn-dir DATA] [--acoustic-scale 1.0] [--blank-penalty 0.0]
#          [--variants "fp16 int8"] [--calib-dir DATA] [--calib-utts 100] [--graph-dir G]
#          [--decode-sets "data/test data/dev"] [--sherpa true] <model-dir|model.acz> <out-dir>
# Deployment rows of a model: <out-dir> (float32 ONNX, CMVN baked in: --cmvn global, the stats of --cmvn-dir or of the model's
# training data, or utterance, each utterance's own; and the decoding options sherpa-onnx lacks), then one ONNX dir per
# variant: <out-dir>_fp16 (fp16 weights), <out-dir>_int8 (dynamic int8), <out-dir>_int8_static
# (QDQ int8, activations calibrated on --calib-utts utterances of --calib-dir).
# With --graph-dir and --decode-sets every dir is decoded in onnxruntime (one thread, batch 1:
# decode_<set>_<graph>/{wer,rtf}), and with --sherpa true the float32 and int8 ones also
# by sherpa-onnx from the audio (sherpa_<set>_<graph>/).
set -euo pipefail
echo "$0 $*"
cmvn=global; cmvn_dir=""; acoustic_scale=1.0; blank_penalty=0.0; variants="fp16 int8"; calib_dir=""; calib_utts=100
graph_dir=""; decode_sets=""; sherpa=false
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 2 ] || { echo "usage: $0 [options] <model-dir|model.acz> <out-dir>" >&2; exit 1; }
src=$1; out=$2
mkdir -p "$out/log"
asrcomp --log-file "$out/log/export.log" export-onnx --cmvn "$cmvn" ${cmvn_dir:+--cmvn-dir "$cmvn_dir"} \
  --acoustic-scale "$acoustic_scale" --blank-penalty "$blank_penalty" "$src" "$out"
dirs="$out"
for v in $variants; do
  case $v in
    fp16) asrcomp --log-file "$out/log/fp16.log" onnx-fp16 "$out" "${out}_fp16"; dirs="$dirs ${out}_fp16" ;;
    int8) asrcomp --log-file "$out/log/int8.log" onnx-int8 --mode dynamic "$out" "${out}_int8"; dirs="$dirs ${out}_int8" ;;
    int8_static)
      [ -n "$calib_dir" ] || { echo "$0: int8_static needs --calib-dir (training data)" >&2; exit 1; }
      asrcomp --log-file "$out/log/int8_static.log" onnx-int8 --mode static --calib-dir "$calib_dir" \
        --calib-utts "$calib_utts" "$out" "${out}_int8_static"
      dirs="$dirs ${out}_int8_static" ;;
    *) echo "$0: unknown variant '$v' (fp16, int8, int8_static)" >&2; exit 1 ;;
  esac
done
[ -n "$graph_dir" ] && [ -n "$decode_sets" ] || exit 0
for d in $dirs; do
  for s in $decode_sets; do
    asrcomp --log-file "$d/log/decode_onnx_$(basename "$s").log" decode-onnx --graph-dir "$graph_dir" "$d" "$s"
    if [ "$sherpa" = true ] && [[ $d != *_fp16 ]]; then
      asrcomp --log-file "$d/log/decode_sherpa_$(basename "$s").log" decode-sherpa --graph-dir "$graph_dir" "$d" "$s"
    fi
  done
done
