#!/usr/bin/env bash
# egs/librispeech: LibriSpeech through lhotse's recipe.
#   ./run.sh --corpus-dir /corpora/LibriSpeech [--parts train-clean-100,dev-clean,test-clean] [--lm-text librispeech-lm-norm.txt.gz]
#   ./run.sh --corpus-dir downloads --download true --mini true      # mini_librispeech, online
# Stages: 0 data prep (Kaldi dirs + lhotse manifests + LM text)  1 fbank  2 lang  3 n-gram LM  4 TLG graph
#   5 train  6 decode  7 compare  8+ compression chain (config 'chain', 'compress:')
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh

corpus_dir=""
parts=train-clean-100,dev-clean,test-clean
train_part=train-clean-100
dev_part=dev-clean
test_parts=test-clean
lm_text=""
download=false
mini=false
config=default
stage=0
stop_stage=100
nj=2
data=""
exp=""
models=""
nproc=1
device=auto
. steps/parse_options.sh

log() { echo "$(date '+%F %T') (run.sh:${BASH_LINENO[0]}) $*"; }
echo "$0 --corpus-dir $corpus_dir --parts $parts --config $config --stage $stage --stop-stage $stop_stage --nj $nj${data:+ --data $data}"
conf=conf/$config.yaml
[ -f "$conf" ] || { echo "no config $conf (choose one of: $(ls conf | sed 's/.yaml//' | xargs))" >&2; exit 1; }
get() { asrcomp config-get "$conf" "$1"; }
token_type=$(get lang.token_type)
bpe_vocab_size=$(get lang.bpe_vocab_size)
lm_order=$(get lm.order)
data=${data:-data/$config}
exp=${exp:-exp/$config}
models=${models:-$(get models)}
if [ "$token_type" = bpe ]; then lang=$data/lang_bpe$bpe_vocab_size; else lang=$data/lang_phone; fi
lm=$data/lm/${lm_order}gram.arpa
graph=${lang}_${lm_order}gram
mkdir -p $data/log
train_set=${train_part//-/_}; dev_set=${dev_part//-/_}
test_sets=""; for t in ${test_parts//,/ }; do test_sets="$test_sets ${t//-/_}"; done

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  if [ -f $data/.prep.done ]; then log "stage 0: data prep already complete in $data"
  else
    [ -n "$corpus_dir" ] || { echo "$0: stage 0 needs --corpus-dir" >&2; exit 1; }
    log "stage 0: LibriSpeech data prep into $data (log: $data/log/data_prep.log)"
    extra=""; [ "$download" = true ] && extra="--download"; [ "$mini" = true ] && extra="$extra --mini"
    python -m local.librispeech.data_prep --corpus-dir $corpus_dir --parts $parts --train-parts $train_part \
      ${lm_text:+--lm-text $lm_text} $extra --log-file $data/log/data_prep.log $data
    touch $data/.prep.done
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  for s in $train_set $dev_set $test_sets; do
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
    steps/prepare_lang.sh --token-type $token_type --bpe-vocab-size $bpe_vocab_size \
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
    steps/train_lm.sh --order $lm_order --vocab $lang/words.txt --ppl-text $data/local/dev_text.txt \
      $data/local/lm_text.txt $lm
  fi
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  if [ -f $graph/TLG.fst ]; then log "stage 4: $graph already complete"
  else log "stage 4: decoding graph $graph"; steps/make_graph.sh $lang $lm $graph; fi
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  for m in $models; do
    if [ -f $exp/$m/final.pt ] && [ -f $exp/$m/model.yaml ]; then log "stage 5: $exp/$m already trained"; continue; fi
    log "stage 5: training $m into $exp/$m (log: $exp/$m/log/train.log)"
    steps/train.sh --conf $conf --arch $m --nproc $nproc --device $device $exp/$m $data/$train_set $data/$dev_set $lang
  done
fi

decode_model() {
  local mdir=$1 s d
  for s in $dev_set $test_sets; do
    d=$mdir/decode_${s}_$(basename $graph)
    if [ -f $d/wer ] && [ $d/wer -nt $mdir/final.pt ]; then log "$mdir on $s already decoded"; continue; fi
    log "decoding $s with $mdir"
    steps/decode.sh --nj $nj --cmd "$decode_cmd" --graph-dir $graph --beam $(get decode.beam) \
      --acoustic-scale $(get decode.acoustic_scale) --blank-penalty $(get decode.blank_penalty) $mdir $data/$s
  done
}

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  for m in $models; do decode_model $exp/$m; done
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  dirs=""; for m in $models; do dirs="$dirs $exp/$m"; done
  steps/compare_wer.sh --sets $(echo $test_sets $dev_set | tr ' ' ,) --out $exp/results.md $dirs
  cat $exp/results.md
fi

# Stages 8+: the compression chain of the config (steps/compress_chain.sh; see egs/synth),
# then exp/<config>/results_all.{md,png}.
if [ $stop_stage -ge 8 ]; then
  all=""; for m in $models; do all="$all $exp/$m"; done
  decode_sets=""; for s in $test_sets $dev_set; do decode_sets="$decode_sets $data/$s"; done
  steps/compress_chain.sh --conf $conf --stage $stage --stop-stage $stop_stage --first-stage 8 \
    --graph-dir $graph --decode-sets "$decode_sets" --nj $nj --cmd "$decode_cmd" --device $device \
    --decode-opts "--beam $(get decode.beam) --acoustic-scale $(get decode.acoustic_scale) --blank-penalty $(get decode.blank_penalty)" \
    --baselines "$all" $exp $data/$train_set $data/$dev_set $lang
fi

log "done"
