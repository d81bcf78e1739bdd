#!/usr/bin/env bash
# Usage: steps/pack.sh [--conf conf.yaml] [--bits 5] [--bits-output 4] [--prune-sparsity 0.0]
#                      [--prune-epochs 0] [--finetune-epochs 0] [--lr ""] [--coder huffman|ans] [--device auto]
#                      [--prune-schedule oneshot|agp] [--prune-initial-sparsity 0] [--prune-ramp-epochs N]
#                      [--prune-every STEPS] [--target-bytes N] [--bits-choices 2,3,4,5,6]
#                      [--sensitivity-batches 4] [--seed N] [--quantizer kmeans|uniform] [--fold-bn true]
#                      [--small-bits 16|8] [--allocation sensitivity|equal-step]
#                      [--distill-alpha 0.5] [--distill-temperature 2] [--teacher <model-dir>]
#                      <src-model-dir> <out-model-dir> [<train-data> <valid-data> <lang-dir>]
# Deep Compression: optional magnitude pruning (+ retraining), k-means weight sharing
# (+ centroid fine-tuning), Huffman coding (or ANS: --coder ans); writes <out-model-dir>/model.acz, pack_report.tsv
# (the sizes with both coders) and a decodable model dir. Options left empty come from the config's
# 'compress.pack:' section (or a top-level 'pack:').
# --bits takes 5 or 'output=4,default=5' (regex on tensor names = bits, 1-16).
# --prune-schedule agp: gradual pruning (Zhu & Gupta 2017) over the retraining instead of one step before it.
# --target-bytes N: bits per tensor chosen from the measured validation-loss increase of each width so that
# model.acz fits N bytes (table in <out-model-dir>/bit_allocation.tsv); --bits is then unused.
# --seed N: the retraining's and fine-tuning's seed (batch order, SpecAugment, the sensitivity batches).
# --quantizer uniform: an entropy-coded uniform grid instead of k-means; --fold-bn true --small-bits 8: batch
# norms folded into scale and shift, the unshared tensors in 8 bits (constants as one value).
# --allocation equal-step (with --quantizer uniform --target-bytes N): one grid step for every shared tensor, the
# finest whose file fits N bytes (MPEG NNR's single quantisation parameter; no sensitivity measured).
# --distill-alpha A: the retraining and fine-tuning learn (1 - A) CTC + A T^2 KL from the input model's posteriors,
# or from those of --teacher <model-dir> (e.g. the chain's baseline).
set -euo pipefail
echo "$0 $*"
conf=""; bits=""; bits_output=""; prune_sparsity=""; prune_epochs=""; finetune_epochs=""; lr=""; device=""; coder=""
prune_schedule=""; prune_initial_sparsity=""; prune_ramp_epochs=""; prune_every=""; target_bytes=""; bits_choices=""
sensitivity_batches=""; seed=""; quantizer=""; fold_bn=""; small_bits=""; allocation=""; distill_alpha=""
distill_temperature=""; teacher=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 2 ] || [ $# -eq 5 ] || {
  echo "usage: $0 [options] <src-model-dir> <out-model-dir> [<train-data> <valid-data> <lang-dir>]" >&2; exit 1; }
dir=$2
mkdir -p "$dir/log"
fold=(); [ "$fold_bn" = true ] && fold=(--fold-bn)
exec asrcomp pack --log-file "$dir/log/pack.log" ${conf:+--conf "$conf"} ${bits:+--bits "$bits"} \
  ${bits_output:+--bits-output "$bits_output"} ${prune_sparsity:+--prune-sparsity "$prune_sparsity"} \
  ${prune_epochs:+--prune-epochs "$prune_epochs"} ${finetune_epochs:+--finetune-epochs "$finetune_epochs"} \
  ${lr:+--lr "$lr"} ${coder:+--coder "$coder"} ${device:+--device "$device"} \
  ${prune_schedule:+--prune-schedule "$prune_schedule"} \
  ${prune_initial_sparsity:+--prune-initial-sparsity "$prune_initial_sparsity"} \
  ${prune_ramp_epochs:+--prune-ramp-epochs "$prune_ramp_epochs"} ${prune_every:+--prune-every "$prune_every"} \
  ${target_bytes:+--target-bytes "$target_bytes"} ${bits_choices:+--bits-choices "$bits_choices"} \
  ${sensitivity_batches:+--sensitivity-batches "$sensitivity_batches"} ${seed:+--seed "$seed"} \
  ${quantizer:+--quantizer "$quantizer"} ${small_bits:+--small-bits "$small_bits"} \
  ${allocation:+--allocation "$allocation"} ${distill_alpha:+--distill-alpha "$distill_alpha"} \
  ${distill_temperature:+--distill-temperature "$distill_temperature"} ${teacher:+--teacher "$teacher"} \
  "${fold[@]}" "$@"
