#!/usr/bin/env bash
# egs/synth: the embedded synthetic corpus recipe.
#   ./run.sh [--config quick|default] [--stage N] [--stop-stage M] [--nj 2] [--data DIR]
# Stages (each skips outputs that are already complete):
#   0  synthesise the corpus: data/{train,dev,test}, lhotse manifests, LM text
#   1  fbank features + CMVN
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
  for s in train dev test; do
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
  for s in train dev test; do
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
    steps/train.sh --conf $conf --arch $m --nproc $nproc --device $device $exp/$m $data/train $data/dev $lang
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

# The compression chain: stage 8+i runs chain[i] on the previous model dir.
chain=$(get_or chain "svd tt distill pack")
base=$(get_or compress.base tdnn)
prev=$exp/$base
all=""; for m in $models; do all="$all $exp/$m"; done
st=8
for step in $chain; do
  c=compress.$step
  case $step in
    tt) out=${prev}_$(get_or $c.method tt) ;;
    *) out=${prev}_$step ;;
  esac
  extra=""  # comparison model dirs a stage writes beside its output
  [ $step = distill ] && [ "$(get_or $c.compare true)" = True ] && extra="${prev}_ctc ${prev}_scratch"
  if [ $stage -le $st ] && [ $stop_stage -ge $st ]; then
    log "stage $st: $step: $prev -> $out"
    train_args="$data/train $data/dev $lang"
    case $step in
      svd)
        steps/compress_svd.sh --conf $conf --layers "$(get_or $c.layers output)" --rank $(get $c.rank) \
          --epochs $(get_or $c.epochs 2) --lr $(get_or $c.lr 0.0005) --device $device $prev $out $train_args ;;
      tt)
        steps/compress_tt.sh --conf $conf --method $(get_or $c.method tt) --layers "$(get_or $c.layers 'layers\.\d+\.conv')" \
          --modes $(get_or $c.modes 3) --rank $(get $c.rank) --epochs $(get_or $c.epochs 2) \
          --lr $(get_or $c.lr 0.0005) --device $device $prev $out $train_args ;;
      distill)
        kd="--conf $conf --teacher $exp/$base --student-dir $prev --temperature $(get_or $c.temperature 2.0)
            --epochs $(get_or $c.epochs 2) --lr $(get_or $c.lr 0.0005) --device $device"
        for d in $out $extra; do
          [ -f $d/model.yaml ] && { log "$d already trained"; continue; }
          case $d in
            $out) steps/distill.sh $kd --alpha $(get_or $c.alpha 0.5) $d $train_args ;;
            *_ctc) steps/distill.sh $kd --alpha 0 $d $train_args ;;  # same student, CTC only
            *_scratch) steps/distill.sh $kd --alpha 0 --from-scratch true $d $train_args ;;
          esac
        done ;;
      pack)
        if [ -f $out/model.yaml ]; then log "$out already packed"; else
          steps/pack.sh --conf $conf --bits $(get_or $c.bits 5) --bits-output $(get_or $c.bits_output 4) \
            --prune-sparsity $(get_or $c.prune_sparsity 0.0) --prune-epochs $(get_or $c.prune_epochs 0) \
            --finetune-epochs $(get_or $c.finetune_epochs 0) --device $device $prev $out $train_args
        fi ;;
      *) echo "$0: unknown chain step '$step' in $conf (svd, tt, distill, pack)" >&2; exit 1 ;;
    esac
    for d in $out $extra; do decode_model $d; done
  fi
  all="$all $extra $out"
  prev=$out
  st=$((st + 1))
done

if [ $stage -le $st ] && [ $stop_stage -ge $st ]; then
  log "stage $st: comparison table of every model"
  steps/sweep_table.sh --graph-dir $graph --decode-sets "$data/test $data/dev" --nj $nj --cmd "$decode_cmd" \
    --decode-opts "--beam $(get decode.beam) --acoustic-scale $(get decode.acoustic_scale) --blank-penalty $(get decode.blank_penalty)" \
    $exp/results_all $all
  steps/compare_wer.sh --sets test,dev --out $exp/results_all.md $all
  if [ "$config" = default ]; then
    cp $exp/results_all.png RESULTS.png
    { echo "# egs/synth results"
      echo
      echo "Produced by \`cd egs/synth && ./run.sh --config default\` (stages 0-$st) on $(nproc) CPU cores, $(date +%F)."
      echo "WER in %, on the held-out-voice test and dev sets; RTF on one thread (network + search)."
      echo "Rows: the baselines, then each compression stage applied to the row above it"
      echo "(\`_ctc\`/\`_scratch\`: the distillation student trained with CTC only, from its init / from scratch)."
      echo "bytes: final.pt, or model.acz for the packed model."
      echo
      cat $exp/results_all.md
      echo
      echo "![WER against bytes](RESULTS.png)"
    } > RESULTS.md.tmp && mv RESULTS.md.tmp RESULTS.md
  fi
fi

log "done"
