#!/usr/bin/env bash
# egs/wsj: Wall Street Journal from the LDC discs, WSJ0 (LDC93S6B) + WSJ1 (LDC94S13B).
#   ./run.sh --wsj0 /corpora/LDC93S6B --wsj1 /corpora/LDC94S13B [--config default] [--stage N] [--stop-stage M]
# Sets, ids, transcripts, LMs and graph/decode names as in Kaldi's egs/wsj/s5, so WERs line up
# with Kaldi's tables (egs/wsj/RESULTS.md).
# Stages (each skips outputs that are already complete):
#   0  data prep: data/{train_si84,train_si284,test_eval92,test_eval93,test_dev93}, lhotse manifests,
#      data/local/dict, data/local/nist_lm/lm_{bg,tg}.arpa, LM text; counts and OOV reports
#   1  fbank features + CMVN for the train and test sets
#   2  lang dir; training-set OOVs mapped to <UNK> (text.orig kept)
#   3  LMs: tgpr = pruned tcb20onp; bd_tgpr = KN trigram on the WSJ LM text, pruned (lm.bd)
#   4  graphs: data/graph_<tokens>/{tgpr,bd_tgpr}/TLG.fst
#   5  train the baseline models (config 'models') on train_si284, validated on test_dev93
#   6  decode test_dev93 and test_eval92 with each graph; Kaldi's names decode_<lm>_<set> link to them
#   7  comparison table exp/<config>/results.md
#   8+ the compression chain (svd, tt, distill, pack; config 'chain' and 'compress:'), then the table
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh

wsj0=""   # LDC93S6B: the directory holding 11-1.1 ... 11-13.1
wsj1=""   # LDC94S13B: the directory holding 13-1.1 ... 13-34.1
config=default
stage=0
stop_stage=100
nj=2
data=""   # default: data/<config>
exp=""    # default: exp/<config>
models="" # default: the config's 'models' list
nproc=1
device=auto
strict_counts=false  # true: fail when a set's utterance count differs from Kaldi's
. steps/parse_options.sh

log() { echo "$(date '+%F %T') (run.sh:${BASH_LINENO[0]}) $*"; }
echo "$0 --wsj0 $wsj0 --wsj1 $wsj1 --config $config --stage $stage --stop-stage $stop_stage --nj $nj${data:+ --data $data}"

conf=conf/$config.yaml
[ -f "$conf" ] || { echo "no config $conf (choose one of: $(ls conf | sed 's/.yaml//' | xargs))" >&2; exit 1; }
get() { asrcomp config-get "$conf" "$1"; }
token_type=$(get lang.token_type)
bpe_vocab_size=$(get lang.bpe_vocab_size)
data=${data:-data/$config}
exp=${exp:-exp/$config}
models=${models:-$(get models)}
if [ "$token_type" = bpe ]; then lang=$data/lang_bpe$bpe_vocab_size; else lang=$data/lang_phone; fi
graphs=$data/graph_$(basename $lang)
train_set=train_si284
test_sets="test_dev93 test_eval92"
mkdir -p $data/log

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  if [ -f $data/.prep.done ]; then
    log "stage 0: data prep already complete in $data"
  else
    [ -n "$wsj0" ] && [ -n "$wsj1" ] || { echo "$0: stage 0 needs --wsj0 DIR --wsj1 DIR" >&2; exit 1; }
    log "stage 0: WSJ data prep into $data (log: $data/log/data_prep.log)"
    extra=""; [ "$strict_counts" = true ] && extra=--strict-counts
    python -m local.wsj.data_prep --wsj0 "$wsj0" --wsj1 "$wsj1" $extra --log-file $data/log/data_prep.log $data
    cat $data/local/wsj/counts.txt $data/local/wsj/oov_rates.txt
    touch $data/.prep.done
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  for s in $train_set $test_sets; do
    if [ -f $data/$s/feats.scp ] && [ $data/$s/feats.scp -nt $data/$s/wav.scp ]; then
      log "stage 1: features for $s already complete"; continue
    fi
    log "stage 1: fbank features for $s"
    steps/make_fbank.sh --nj $nj --conf $conf $data/$s $data/fbank
  done
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  if [ -f $lang/L_disambig.fst ]; then
    log "stage 2: $lang already complete"
  else
    log "stage 2: lang dir $lang"
    cut -d' ' -f2- $data/$train_set/text > $data/local/train_text.txt
    bpe_text=$data/local/train_text.txt
    [ -s $data/local/local_lm/lm_text.txt ] && bpe_text=$data/local/local_lm/lm_text.txt
    steps/prepare_lang.sh --token-type $token_type --bpe-vocab-size $bpe_vocab_size \
      --bpe-text $bpe_text $lang $data/local/vocab.txt
  fi
  python -m local.kaldi_dir.map_oov --lang $lang --log-file $data/log/map_oov_$train_set.log $data/$train_set
  for s in $train_set; do asrcomp validate-data-dir --lang-dir $lang $data/$s; done
fi

lms=""
[ -f $data/local/nist_lm/lm_tg.arpa ] && lms="tgpr"
[ "$(get lm.bd)" = True ] || [ "$(get lm.bd)" = true ] && [ -s $data/local/local_lm/lm_text.txt ] && lms="$lms bd_tgpr"

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  thr=$(get lm.prune_threshold)
  for lm in $lms; do
    out=$data/local/lm/$lm.arpa
    if [ -f $out ]; then log "stage 3: $out already complete"; continue; fi
    mkdir -p $data/local/lm/log
    if [ $lm = tgpr ]; then
      log "stage 3: $out = lm_tg (tcb20onp) pruned at $thr"
      python -m local.wsj.prune_lm --threshold $thr --log-file $data/local/lm/log/prune_tgpr.log \
        $data/local/nist_lm/lm_tg.arpa $out
    else
      log "stage 3: bd_tg = $(get lm.order)-gram on the WSJ LM text, then $out pruned at $thr"
      steps/train_lm.sh --order $(get lm.order) --vocab $lang/words.txt $data/local/local_lm/lm_text.txt $data/local/lm/bd_tg.arpa
      python -m local.wsj.prune_lm --threshold $thr --log-file $data/local/lm/log/prune_bd_tgpr.log \
        $data/local/lm/bd_tg.arpa $out
    fi
  done
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  for lm in $lms; do
    if [ -f $graphs/$lm/TLG.fst ]; then log "stage 4: $graphs/$lm already complete"; continue; fi
    log "stage 4: decoding graph $graphs/$lm"
    steps/make_graph.sh $lang $data/local/lm/$lm.arpa $graphs/$lm
  done
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  for m in $models; do
    if [ -f $exp/$m/final.pt ] && [ -f $exp/$m/model.yaml ]; then
      log "stage 5: $exp/$m already trained"; continue
    fi
    log "stage 5: training $m into $exp/$m (log: $exp/$m/log/train.log)"
    steps/train.sh --conf $conf --arch $m --nproc $nproc --device $device $exp/$m $data/$train_set \
      $data/test_dev93 $lang
  done
fi

# decode one model dir with every graph; Kaldi's names (decode_tgpr_dev93) link to asrcomp's
decode_model() {
  local mdir=$1 s lm d
  for lm in $lms; do
    for s in $test_sets; do
      d=$mdir/decode_${s}_$lm
      if [ -f $d/wer ] && [ $d/wer -nt $mdir/final.pt ]; then log "$mdir on $s with $lm already decoded"; continue; fi
      log "decoding $s with $mdir and $lm"
      steps/decode.sh --nj $nj --cmd "$decode_cmd" --graph-dir $graphs/$lm --beam $(get decode.beam) \
        --acoustic-scale $(get decode.acoustic_scale) --blank-penalty $(get decode.blank_penalty) $mdir $data/$s
      ln -sfn decode_${s}_$lm $mdir/decode_${lm}_${s#test_}
    done
  done
}

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  for m in $models; do decode_model $exp/$m; done
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  dirs=""; for m in $models; do dirs="$dirs $exp/$m"; done
  steps/compare_wer.sh --sets $(echo $test_sets | tr ' ' ,) --out $exp/results.md $dirs
  cat $exp/results.md
fi

# Stages 8+: the compression chain of the config (steps/compress_chain.sh; see egs/synth), decoded
# with the first LM's graph; then exp/<config>/results_all.{md,png}.
if [ $stop_stage -ge 8 ]; then
  first_lm=${lms%% *}
  all=""; for m in $models; do all="$all $exp/$m"; done
  decode_sets=""; for s in $test_sets; do decode_sets="$decode_sets $data/$s"; done
  steps/compress_chain.sh --conf $conf --stage $stage --stop-stage $stop_stage --first-stage 8 \
    --graph-dir $graphs/$first_lm --decode-sets "$decode_sets" --nj $nj --cmd "$decode_cmd" --device $device \
    --decode-opts "--beam $(get decode.beam) --acoustic-scale $(get decode.acoustic_scale) --blank-penalty $(get decode.blank_penalty)" \
    --baselines "$all" $exp $data/$train_set $data/test_dev93 $lang
fi

log "done"
