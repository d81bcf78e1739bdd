#!/usr/bin/env bash
# Usage: steps/compress_chain.sh --conf conf.yaml --graph-dir G --decode-sets "data/test data/dev"
#          [--stage 0] [--stop-stage 100] [--first-stage 8] [--decode-opts "--beam 16 ..."] [--nj 2]
#          [--cmd ""] [--device auto] [--baselines "exp/tdnn exp/dnn"] <exp-dir> <train-data> <valid-data> <lang-dir>
# The compression chain of a recipe. Stage first-stage+i runs the i-th entry of the config's
# 'chain' (default: svd tt distill pack) on the previous entry's model dir (the first on
# <exp-dir>/<compress.base>), then decodes it on every --decode-sets set. Options of each
# entry come from the config's 'compress.<entry>' section:
#   svd      steps/compress_svd.sh   layers, rank, epochs, lr; with during_training_epoch: N also
#            <dir>_svd_during_training: SVD of epoch-N.pt, then during_training_epochs more epochs
#   tt       steps/compress_tt.sh    method (tt|tucker|cp), layers, modes, shapes, rank, epochs, lr
#   distill  steps/distill.sh        the previous model as student of the base model (alpha,
#            temperature, epochs, lr); with compare: true also the same student trained with
#            CTC only (<dir>_ctc) and from scratch (<dir>_scratch)
#   pack     steps/pack.sh           bits, bits_output, prune_sparsity, prune_epochs, finetune_epochs;
#            prune_schedule (oneshot|agp), prune_initial_sparsity, prune_ramp_epochs, prune_every;
#            target_bytes, bits_choices, sensitivity_batches (bit allocation); seed; teacher (with
#            distill_alpha: a model of <exp-dir> by name, e.g. tdnn, or a path)
#   quant    steps/quantize.sh       bits (8|4|2|1: int8, int4, ternary, binary), keep, epochs (STE), lr;
#            writes <prev>_q<bits>
#   prune_channels  steps/prune_channels.sh  keep, l1, sparsity_epochs, epochs, lr, min_layer_keep: structured
#            channel pruning of a plain TDNN (put it before svd / tt); writes <prev>_pc
# Stage first-stage+len(chain): the peers of the base (compress.peers: fp16, int8, q4, q2, q1),
# then <exp-dir>/results_all.{md,png}, every model (--baselines first).
set -euo pipefail
echo "$0 $*"
conf=""; graph_dir=""; decode_sets=""; stage=0; stop_stage=100; first_stage=8; decode_opts=""; nj=2; cmd=""
device=auto; baselines=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 4 ] && [ -n "$conf" ] && [ -n "$graph_dir" ] && [ -n "$decode_sets" ] || {
  echo "usage: $0 --conf C --graph-dir G --decode-sets SETS [options] <exp-dir> <train> <valid> <lang>" >&2; exit 1; }
exp=$1; train_args=("$2" "$3" "$4")
steps=$(dirname "$0")
log() { echo "$(date '+%F %T') (compress_chain.sh:${BASH_LINENO[0]}) $*"; }
get() { asrcomp config-get "$conf" "$1"; }
get_or() { asrcomp config-get --default "$2" "$conf" "$1"; }

decode_model() {  # <model-dir>: every decode set, unless already scored for this final.pt and these options
  local m=$1 s
  for s in $decode_sets; do
    # shellcheck disable=SC2086
    $steps/decode.sh --skip-done true --nj $nj --cmd "$cmd" --graph-dir $graph_dir $decode_opts $m $s
  done
}

base=$(get_or compress.base tdnn)
prev=$exp/$base
all="$baselines"
st=$first_stage
for step in $(get_or chain "svd tt distill pack"); do
  c=compress.$step
  case $step in
    tt) out=${prev}_$(get_or $c.method tt) ;;
    quant) out=${prev}_q$(get_or $c.bits 8) ;;
    prune_channels) out=${prev}_pc ;;
    *) out=${prev}_$step ;;
  esac
  extra=""  # comparison model dirs a stage writes beside its output
  [ $step = distill ] && [ "$(get_or $c.compare true)" = True ] && extra="${prev}_ctc ${prev}_scratch"
  dt_epoch=$(get_or $c.during_training_epoch "")  # svd: also restructure epoch-N.pt and train on
  [ $step = svd ] && [ -n "$dt_epoch" ] && extra="${prev}_svd_during_training"
  if [ $stage -le $st ] && [ $stop_stage -ge $st ]; then
    log "stage $st: $step: $prev -> $out"
    case $step in
      svd)
        $steps/compress_svd.sh --conf $conf --layers "$(get_or $c.layers output)" --rank $(get $c.rank) \
          --epochs $(get_or $c.epochs 2) --lr $(get_or $c.lr 0.0005) --device $device $prev $out "${train_args[@]}"
        if [ -n "$extra" ]; then
          $steps/compress_svd.sh --conf $conf --layers "$(get_or $c.layers output)" --rank $(get $c.rank) \
            --from-checkpoint $prev/epoch-$dt_epoch.pt --epochs $(get $c.during_training_epochs) \
            --lr $(get_or $c.during_training_lr 0.001) --device $device $prev $extra "${train_args[@]}"
        fi ;;
      tt)
        $steps/compress_tt.sh --conf $conf --method $(get_or $c.method tt) \
          --layers "$(get_or $c.layers 'layers\.\d+\.conv')" --modes $(get_or $c.modes 3) \
          --shapes "$(get_or $c.shapes '')" --rank $(get $c.rank) \
          --epochs $(get_or $c.epochs 2) --lr $(get_or $c.lr 0.0005) --device $device $prev $out "${train_args[@]}" ;;
      distill)
        kd="--conf $conf --teacher $exp/$base --student-dir $prev --temperature $(get_or $c.temperature 2.0)
            --epochs $(get_or $c.epochs 2) --lr $(get_or $c.lr 0.0005) --device $device"
        for d in $out $extra; do
          if [ -f $d/model.yaml ]; then log "$d already trained"; continue; fi
          case $d in
            $out) $steps/distill.sh $kd --alpha $(get_or $c.alpha 0.5) $d "${train_args[@]}" ;;
            *_ctc) $steps/distill.sh $kd --alpha 0 $d "${train_args[@]}" ;;  # same student, CTC only
            *_scratch) $steps/distill.sh $kd --alpha 0 --from-scratch true $d "${train_args[@]}" ;;
          esac
        done ;;
      pack)
        if [ -f $out/model.yaml ]; then log "$out already packed"; else
          teacher=$(get_or $c.teacher '')  # a model of the exp dir by name, or a path
          [[ -z $teacher || $teacher == */* ]] || teacher=$exp/$teacher
          $steps/pack.sh --conf $conf --bits $(get_or $c.bits 5) --bits-output $(get_or $c.bits_output 4) \
            --prune-sparsity $(get_or $c.prune_sparsity 0.0) --prune-epochs $(get_or $c.prune_epochs 0) \
            --finetune-epochs $(get_or $c.finetune_epochs 0) --prune-schedule "$(get_or $c.prune_schedule '')" \
            --prune-initial-sparsity "$(get_or $c.prune_initial_sparsity '')" \
            --prune-ramp-epochs "$(get_or $c.prune_ramp_epochs '')" --prune-every "$(get_or $c.prune_every '')" \
            --target-bytes "$(get_or $c.target_bytes '')" --bits-choices "$(get_or $c.bits_choices '')" \
            --sensitivity-batches "$(get_or $c.sensitivity_batches '')" --seed "$(get_or $c.seed '')" \
            --teacher "$teacher" \
            --device $device $prev $out "${train_args[@]}"
        fi ;;
      quant)
        if [ -f $out/model.yaml ]; then log "$out already quantised"; else
          $steps/quantize.sh --conf $conf --bits $(get_or $c.bits 8) --keep "$(get_or $c.keep '')" \
            --epochs $(get_or $c.epochs 0) --lr "$(get_or $c.lr '')" --device $device $prev $out "${train_args[@]}"
        fi ;;
      prune_channels)
        if [ -f $out/model.yaml ]; then log "$out already pruned"; else
          $steps/prune_channels.sh --conf $conf --keep $(get_or $c.keep 0.6) --l1 $(get_or $c.l1 1e-4) \
            --sparsity-epochs $(get_or $c.sparsity_epochs 2) --epochs $(get_or $c.epochs 2) \
            --lr "$(get_or $c.lr 0.0005)" --min-layer-keep $(get_or $c.min_layer_keep 0.1) --device $device \
            $prev $out "${train_args[@]}"
        fi ;;
      *) echo "$0: unknown chain entry '$step' in $conf (svd, tt, distill, pack, quant, prune_channels)" >&2; exit 1 ;;
    esac
    for d in $out $extra; do decode_model $d; done
  fi
  all="$all $extra $out"
  prev=$out
  st=$((st + 1))
done

if [ $stage -le $st ] && [ $stop_stage -ge $st ]; then
  # peers of the chain, what a user gets in two lines from the base model (config compress.peers:
  # fp16 / int8 = steps/peer.sh, fp16 or int8-per-channel + zstd; q4 / q2 / q1 = steps/quantize.sh
  # without fine-tuning): decoded, and rows of the table
  for p in $(get_or compress.peers ""); do
    out=$exp/${base}_peer_$p
    if [ ! -f $out/model.yaml ]; then
      case $p in
        fp16|int8) $steps/peer.sh --kind $p $exp/$base $out ;;
        q[1248]) $steps/quantize.sh --conf $conf --bits ${p#q} --device $device $exp/$base $out ;;
        *) echo "$0: unknown peer '$p' in $conf compress.peers (fp16, int8, q8, q4, q2, q1)" >&2; exit 1 ;;
      esac
    fi
    decode_model $out
    all="$all $out"
  done
  log "stage $st: comparison table of every model"
  # shellcheck disable=SC2086
  $steps/sweep_table.sh --graph-dir $graph_dir --decode-sets "$decode_sets" --nj $nj --cmd "$cmd" \
    --decode-opts "$decode_opts" $exp/results_all $all
  sets=""; for s in $decode_sets; do sets="$sets${sets:+,}$(basename $s)"; done
  # shellcheck disable=SC2086
  $steps/compare_wer.sh --sets $sets --out $exp/results_all.md $all
fi
