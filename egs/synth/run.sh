#!/usr/bin/env bash
# egs/synth: the embedded synthetic corpus recipe.
#   ./run.sh [--config quick|default] [--stage N] [--stop-stage M] [--nj 2] [--data DIR]
# Stages (each skips outputs that are already complete):
#   0  synthesise the corpus: data/{train,dev,test}, lhotse manifests, LM text
#   1  fbank features + CMVN (and, if the config lists speed_perturb factors, data/train_sp:
#      Kaldi's speed-perturbed copies of train, on which stage 5 trains the baselines)
#   2  lang dir (lexicon, tokens, L_disambig.fst)
#   3  3-gram LM (ARPA) and its perplexity on test
#   4  decoding graph TLG.fst
#   5  train the baseline acoustic models (TDNN, DNN) with CTC
#   6  decode dev and test with TLG and greedy, score WER, measure RTF
#   7  baseline comparison table (exp/<config>/results.md)
#   8+ the compression chain, one stage per entry of the config's 'chain' (default: svd tt
#      distill pack), each reading the previous entry's model dir (the first reads the
#      'compress.base' baseline), then decoding and scoring it:
#        svd      steps/compress_svd.sh   SVD of the output layer + fine-tuning
#        tt       steps/compress_tt.sh    TT / Tucker / CP of the hidden layers + fine-tuning
#        distill  steps/distill.sh        the previous model as student of the baseline teacher;
#                                         also the same student with CTC only, and from scratch
#        pack     steps/pack.sh           pruning, k-means weight sharing, Huffman: model.acz
#   last: the table of every model and a WER-vs-bytes plot (RESULTS.md for the default config)
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh

config=default
stage=0
stop_stage=100
nj=2
data=""   # default: data/<config>
exp=""    # default: exp/<config>
models="" # default: the config's 'models' list
nproc=1   # training processes (torchrun DDP when > 1)
device=auto
. steps/parse_options.sh

log() { echo "$(date '+%F %T') (run.sh:${BASH_LINENO[0]}) $*"; }
echo "$0 --config $config --stage $stage --stop-stage $stop_stage --nj $nj${data:+ --data $data}"

conf=conf/$config.yaml
[ -f "$conf" ] || { echo "no config $conf (choose one of: $(ls conf | sed 's/.yaml//' | xargs))" >&2; exit 1; }
get() { asrcomp config-get "$conf" "$1"; }
get_or() { asrcomp config-get --default "$2" "$conf" "$1"; }
token_type=$(get lang.token_type)
bpe_vocab_size=$(get lang.bpe_vocab_size)
lm_order=$(get lm.order)
data=${data:-data/$config}
exp=${exp:-exp/$config}
models=${models:-$(get models)}
if [ "$token_type" = bpe ]; then lang=$data/lang_bpe$bpe_vocab_size; else lang=$data/lang_phone; fi
lm=$data/lm/${lm_order}gram.arpa
graph=${lang}_${lm_order}gram
speed_perturb=$(get_or speed_perturb "")
sets="train dev test"; train_set=train
if [ -n "$speed_perturb" ]; then train_set=train_sp; sets="$sets train_sp"; fi

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  if [ -f $data/.corpus.done ] && [ "$(get corpus)" = "$(cat $data/.corpus.done)" ]; then
    log "stage 0: corpus already complete in $data"
  else
    log "stage 0: synthesising the corpus into $data"
    mkdir -p $data/log
    python -m local.synth.make_corpus --config $conf --nj $nj --log-file $data/log/make_corpus.log $data
    get corpus > $data/.corpus.done  # the corpus section it was made from
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  if [ -n "$speed_perturb" ] && ! { [ $data/train_sp/wav.scp -nt $data/train/wav.scp ] &&
      [ "$(cat $data/train_sp/.speed_perturb.done 2>/dev/null)" = "$speed_perturb" ]; }; then
    log "stage 1: speed-perturbed training set $data/train_sp (factors $speed_perturb)"
    steps/perturb_data_dir_speed.sh --factors "$speed_perturb" $data/train $data/train_sp
    echo "$speed_perturb" > $data/train_sp/.speed_perturb.done  # the factors it was made with
  fi
  for s in $sets; do
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
  for s in train dev test; do  # train_sp's transcripts are train's
    asrcomp validate-data-dir --lang-dir $lang $data/$s
  done
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  if [ -f $lm ]; then
    log "stage 3: $lm already complete"
  else
    log "stage 3: ${lm_order}-gram LM"
    cut -d' ' -f2- $data/test/text > $data/local/test_text.txt
    steps/train_lm.sh --order $lm_order --vocab $lang/words.txt --ppl-text $data/local/test_text.txt \
      $data/local/lm_text.txt $lm
  fi
  cat ${lm%.arpa}.ppl
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  if [ -f $graph/TLG.fst ]; then
    log "stage 4: $graph already complete"
  else
    log "stage 4: decoding graph $graph"
    steps/make_graph.sh $lang $lm $graph
  fi
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  for m in $models; do
    if [ -f $exp/$m/final.pt ] && [ -f $exp/$m/model.yaml ]; then
      log "stage 5: $exp/$m already trained"; continue
    fi
    log "stage 5: training $m into $exp/$m (log: $exp/$m/log/train.log)"
    steps/train.sh --conf $conf --arch $m --nproc $nproc --device $device $exp/$m $data/$train_set $data/dev $lang
  done
fi

decode_model() {  # <model-dir>: TLG and greedy on test and dev, unless already scored for this final.pt
  local m=$1 s wer
  for s in test dev; do
    wer=$m/decode_${s}_$(basename $graph)/wer
    if [ -f $wer ] && [ $wer -nt $m/final.pt ]; then log "$m on $s already decoded"; continue; fi
    log "decoding $s with $m"
    steps/decode.sh --nj $nj --cmd "$decode_cmd" --graph-dir $graph --beam $(get decode.beam) \
      --acoustic-scale $(get decode.acoustic_scale) --blank-penalty $(get decode.blank_penalty) $m $data/$s
  done
}

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  for m in $models; do decode_model $exp/$m; done
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  dirs=""; for m in $models; do dirs="$dirs $exp/$m"; done
  steps/compare_wer.sh --sets test,dev --out $exp/results.md $dirs
fi

# Stages 8+: the compression chain (steps/compress_chain.sh), then the table of every model.
last=$((8 + $(get_or chain "svd tt distill pack" | wc -w)))
if [ $stop_stage -ge 8 ]; then
  all=""; for m in $models; do all="$all $exp/$m"; done
  steps/compress_chain.sh --conf $conf --stage $stage --stop-stage $stop_stage --first-stage 8 \
    --graph-dir $graph --decode-sets "$data/test $data/dev" --nj $nj --cmd "$decode_cmd" --device $device \
    --decode-opts "--beam $(get decode.beam) --acoustic-scale $(get decode.acoustic_scale) --blank-penalty $(get decode.blank_penalty)" \
    --baselines "$all" $exp $data/train $data/dev $lang
fi

if [ $stage -le $last ] && [ $stop_stage -ge $last ] && [ "$config" = default ]; then
  cp $exp/results_all.png RESULTS.png
  { echo "# egs/synth results"
    echo
    echo "Produced by \`cd egs/synth && ./run.sh --config default\` (stages 0-$last) on $(nproc) CPU cores, $(date +%F)."
    echo "WER in %, on the held-out-voice test and dev sets; RTF on one thread (network + search)."
    echo "Rows: the baselines, then each compression stage applied to the row above it"
    echo "(\`_ctc\` / \`_scratch\`: the distillation student trained with CTC only, from its init / from scratch)."
    echo "bytes: final.pt, or model.acz for the packed model."
    echo
    cat $exp/results_all.md
    echo
    echo "![WER against bytes](RESULTS.png)"
  } > RESULTS.md.tmp && mv RESULTS.md.tmp RESULTS.md
fi

log "done"
