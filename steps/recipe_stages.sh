#!/usr/bin/env bash
# Usage: steps/recipe_stages.sh --conf conf.yaml --data data/<config> --exp exp/<config>
#          --train-set train --dev-set dev --test-sets "test ..." [--models "tdnn dnn"] [--stage 0]
#          [--stop-stage 100] [--nj 2] [--nproc 1] [--device auto] [--cmd ""]
# Stages 1+ of a recipe whose stage 0 wrote <data>/<set>/ Kaldi data dirs, <data>/local/lm_text.txt
# and <data>/local/vocab.txt (see README, "Porting to other corpora"); each skips what is complete:
#   1 fbank features of every set    2 lang dir; training-set OOVs -> <UNK> (local.kaldi_dir.map_oov)
#   3 n-gram LM (perplexity on dev)  4 TLG graph   5 train --models (default: the config's 'models')
#   6 decode dev and test sets       7 <exp>/results.md
#   8+ the config's compression chain (steps/compress_chain.sh), then <exp>/results_all.{md,png}
# Lang, LM and graph dirs follow the config: <data>/lang_{phone,bpe<N>}, <data>/lm/<order>gram.arpa,
# <lang>_<order>gram.
set -euo pipefail
echo "$0 $*"
conf=""; data=""; exp=""; train_set=""; dev_set=""; test_sets=""; models=""
stage=0; stop_stage=100; nj=2; nproc=1; device=auto; cmd=""
. "$(dirname "$0")/parse_options.sh"
[ ${#args[@]} -eq 0 ] && [ -f "$conf" ] && [ -n "$data" ] && [ -n "$exp" ] && [ -n "$train_set" ] \
  && [ -n "$dev_set" ] && [ -n "$test_sets" ] || {
  echo "usage: $0 --conf C --data D --exp E --train-set T --dev-set V --test-sets \"S ...\" [options]" >&2; exit 1; }
steps=$(dirname "$0")
log() { echo "$(date '+%F %T') (recipe_stages.sh:${BASH_LINENO[0]}) $*"; }
get() { asrcomp config-get "$conf" "$1"; }
token_type=$(get lang.token_type)
bpe_vocab_size=$(get lang.bpe_vocab_size)
lm_order=$(get lm.order)
models=${models:-$(get models)}
if [ "$token_type" = bpe ]; then lang=$data/lang_bpe$bpe_vocab_size; else lang=$data/lang_phone; fi
lm=$data/lm/${lm_order}gram.arpa
graph=${lang}_${lm_order}gram
mkdir -p $data/log

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  for s in $train_set $dev_set $test_sets; do
    if [ -f $data/$s/feats.scp ] && [ $data/$s/feats.scp -nt $data/$s/wav.scp ]; then
      log "stage 1: features for $s already complete"; continue
    fi
    log "stage 1: fbank features for $s"
    $steps/make_fbank.sh --nj $nj --conf $conf $data/$s $data/fbank
  done
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  if [ -f $lang/L_disambig.fst ]; then
    log "stage 2: $lang already complete"
  else
    log "stage 2: lang dir $lang"
    $steps/prepare_lang.sh --token-type $token_type --bpe-vocab-size $bpe_vocab_size \
      --bpe-text $data/local/lm_text.txt $lang $data/local/vocab.txt
  fi
  python -m local.kaldi_dir.map_oov --lang $lang --log-file $data/log/map_oov_$train_set.log $data/$train_set
  asrcomp validate-data-dir --lang-dir $lang $data/$train_set
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  if [ -f $lm ]; then
    log "stage 3: $lm already complete"
  else
    log "stage 3: ${lm_order}-gram LM"
    cut -d' ' -f2- $data/$dev_set/text > $data/local/dev_text.txt
    $steps/train_lm.sh --order $lm_order --vocab $lang/words.txt --ppl-text $data/local/dev_text.txt \
      $data/local/lm_text.txt $lm
  fi
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  if [ -f $graph/TLG.fst ]; then log "stage 4: $graph already complete"
  else log "stage 4: decoding graph $graph"; $steps/make_graph.sh $lang $lm $graph; fi
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  for m in $models; do
    if [ -f $exp/$m/final.pt ] && [ -f $exp/$m/model.yaml ]; then log "stage 5: $exp/$m already trained"; continue; fi
    log "stage 5: training $m into $exp/$m (log: $exp/$m/log/train.log)"
    $steps/train.sh --conf $conf --arch $m --nproc $nproc --device $device $exp/$m $data/$train_set $data/$dev_set $lang
  done
fi

[ $stop_stage -ge 6 ] || exit 0
decode_opts="--beam $(get decode.beam) --acoustic-scale $(get decode.acoustic_scale) --blank-penalty $(get decode.blank_penalty)"
baselines=""; for m in $models; do baselines="$baselines $exp/$m"; done

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  for mdir in $baselines; do
    for s in $dev_set $test_sets; do
      d=$mdir/decode_${s}_$(basename $graph)
      if [ -f $d/wer ] && [ $d/wer -nt $mdir/final.pt ]; then log "$mdir on $s already decoded"; continue; fi
      log "decoding $s with $mdir"
      # shellcheck disable=SC2086
      $steps/decode.sh --nj $nj --cmd "$cmd" --graph-dir $graph $decode_opts $mdir $data/$s
    done
  done
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  # shellcheck disable=SC2086
  $steps/compare_wer.sh --sets $(echo $test_sets $dev_set | tr ' ' ,) --out $exp/results.md $baselines
  cat $exp/results.md
fi

if [ $stop_stage -ge 8 ]; then
  decode_sets=""; for s in $test_sets $dev_set; do decode_sets="$decode_sets $data/$s"; done
  $steps/compress_chain.sh --conf $conf --stage $stage --stop-stage $stop_stage --first-stage 8 \
    --graph-dir $graph --decode-sets "$decode_sets" --nj $nj --cmd "$cmd" --device $device \
    --decode-opts "$decode_opts" --baselines "$baselines" $exp $data/$train_set $data/$dev_set $lang
fi
