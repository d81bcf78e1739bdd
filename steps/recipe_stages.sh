#!/usr/bin/env bash
# Usage: steps/recipe_stages.sh --conf conf.yaml --data data/<config> --exp exp/<config>
#          --train-set train --dev-set dev --test-sets "test ..." [--models "tdnn dnn"] [--stage 0]
#          [--stop-stage 100] [--nj 2] [--nproc 1] [--device auto] [--cmd ""]
#          [--lexicon FILE] [--lms "3gram"] [--lm-cmd CMD]
# Stages 1+ of every recipe, whose stage 0 wrote <data>/<set>/ Kaldi data dirs, <data>/local/lm_text.txt
# and <data>/local/vocab.txt (see README, "Porting to other corpora"); each skips what is complete:
#   1 speed-perturbed <train>_sp when the config lists speed_perturb (Kaldi's 3-way); fbank of every set
#   2 lang dir (--lexicon: the corpus's own lexicon.txt, CMUdict for the words it lacks; config
#     lang.keep_stress); every set checked, its OOV rate reported (OOVs never stop a stage:
#     training reads them as <UNK>, scoring counts them as errors against the original text)
#   3 LMs: the config's n-gram (lm.order) on lm_text.txt, perplexity and OOV rate on dev and test;
#     or --lm-cmd CMD, a recipe-local script run as `CMD --conf C --data D --lang L` that writes
#     <data>/lm/<name>.arpa for every name of --lms (e.g. WSJ's tgpr and bd_tgpr)
#   4 a TLG graph <lang>_<name> per LM     5 train --models (default: the config's 'models') on
#     <train>_sp or <train>                6 decode dev and test sets with every graph
#   7 <exp>/results.md
#   8+ the config's compression chain (steps/compress_chain.sh, first graph; fine-tuning on <train>),
#      then <exp>/results_all.{md,png}
# Lang and graph dirs follow the config: <data>/lang_{phone,bpe<N>}, <lang>_<lm name>.
set -euo pipefail
echo "$0 $*"
conf=""; data=""; exp=""; train_set=""; dev_set=""; test_sets=""; models=""
stage=0; stop_stage=100; nj=2; nproc=1; device=auto; cmd=""; lexicon=""; lms=""; lm_cmd=""
. "$(dirname "$0")/parse_options.sh"
[ ${#args[@]} -eq 0 ] && [ -f "$conf" ] && [ -n "$data" ] && [ -n "$exp" ] && [ -n "$train_set" ] \
  && [ -n "$dev_set" ] && [ -n "$test_sets" ] || {
  echo "usage: $0 --conf C --data D --exp E --train-set T --dev-set V --test-sets \"S ...\" [options]" >&2; exit 1; }
steps=$(dirname "$0")
log() { echo "$(date '+%F %T') (recipe_stages.sh:${BASH_LINENO[0]}) $*"; }
get() { asrcomp config-get "$conf" "$1"; }
get_or() { asrcomp config-get --default "$2" "$conf" "$1"; }
token_type=$(get lang.token_type)
bpe_vocab_size=$(get lang.bpe_vocab_size)
keep_stress=$(get_or lang.keep_stress False | tr '[:upper:]' '[:lower:]')
lm_order=$(get lm.order)
lms=${lms:-${lm_order}gram}
models=${models:-$(get models)}
speed_perturb=$(get_or speed_perturb "")
if [ "$token_type" = bpe ]; then lang=$data/lang_bpe$bpe_vocab_size; else lang=$data/lang_phone; fi
graphs=""; for lm in $lms; do graphs="$graphs ${lang}_$lm"; done
first_graph=${lang}_${lms%% *}
model_train_set=$train_set; [ -n "$speed_perturb" ] && model_train_set=${train_set}_sp
mkdir -p $data/log

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  sets="$train_set $dev_set $test_sets"
  if [ -n "$speed_perturb" ]; then
    sp=$data/$model_train_set
    if [ $sp/wav.scp -nt $data/$train_set/wav.scp ] && [ "$(cat $sp/.speed_perturb.done 2>/dev/null)" = "$speed_perturb" ]; then
      log "stage 1: $sp already complete"
    else
      log "stage 1: speed-perturbed training set $sp (factors $speed_perturb)"
      $steps/perturb_data_dir_speed.sh --factors "$speed_perturb" $data/$train_set $sp
      echo "$speed_perturb" > $sp/.speed_perturb.done  # the factors it was made with
    fi
    sets="$sets $model_train_set"
  fi
  for s in $sets; do  # make-fbank keeps features made with the config's options (new CMVN stats if only CMVN changed)
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
      --bpe-text $data/local/lm_text.txt --lexicon "$lexicon" --keep-stress $keep_stress $lang $data/local/vocab.txt
  fi
  for s in $train_set $dev_set $test_sets; do  # <train>_sp's transcripts are <train>'s
    asrcomp validate-data-dir --lang-dir $lang $data/$s
  done | tee $data/log/oov_rates.txt
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  if [ -n "$lm_cmd" ]; then
    log "stage 3: LMs $lms by $lm_cmd"
    $lm_cmd --conf $conf --data $data --lang $lang
  elif [ -f $data/lm/$lms.arpa ]; then
    log "stage 3: $data/lm/$lms.arpa already complete"
  else
    log "stage 3: ${lm_order}-gram LM $data/lm/$lms.arpa"
    ppl=""; for s in $dev_set $test_sets; do cut -d' ' -f2- $data/$s/text > $data/local/${s}_text.txt; ppl="$ppl $data/local/${s}_text.txt"; done
    $steps/train_lm.sh --order $lm_order --vocab $lang/words.txt --ppl-text "$ppl" \
      $data/local/lm_text.txt $data/lm/$lms.arpa
  fi
  for lm in $lms; do
    [ -f $data/lm/$lm.arpa ] || { echo "$0: stage 3 made no $data/lm/$lm.arpa" >&2; exit 1; }
    [ -f $data/lm/$lm.ppl ] && cat $data/lm/$lm.ppl
  done
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  for lm in $lms; do
    g=${lang}_$lm
    if [ -f $g/TLG.fst ]; then log "stage 4: $g already complete"; continue; fi
    log "stage 4: decoding graph $g"
    $steps/make_graph.sh $lang $data/lm/$lm.arpa $g
  done
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  for m in $models; do
    if [ -f $exp/$m/final.pt ] && [ -f $exp/$m/model.yaml ]; then log "stage 5: $exp/$m already trained"; continue; fi
    log "stage 5: training $m on $model_train_set into $exp/$m (log: $exp/$m/log/train.log)"
    $steps/train.sh --conf $conf --arch $m --nproc $nproc --device $device $exp/$m $data/$model_train_set \
      $data/$dev_set $lang
  done
fi

[ $stop_stage -ge 6 ] || exit 0
decode_opts="--beam $(get decode.beam) --acoustic-scale $(get decode.acoustic_scale) --blank-penalty $(get decode.blank_penalty)"
baselines=""; for m in $models; do baselines="$baselines $exp/$m"; done

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  for mdir in $baselines; do
    for g in $graphs; do
      for s in $dev_set $test_sets; do
        log "decoding $s with $mdir and $(basename $g) (unless done with these options)"
        # shellcheck disable=SC2086
        $steps/decode.sh --skip-done true --nj $nj --cmd "$cmd" --graph-dir $g $decode_opts $mdir $data/$s
      done
    done
  done
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  # shellcheck disable=SC2086
  $steps/compare_wer.sh --sets $(echo $test_sets $dev_set | tr ' ' ,) --out $exp/results.md $baselines
  cat $exp/results.md
fi

if [ $stop_stage -ge 8 ]; then
  decode_sets=""; for s in $test_sets $dev_set; do decode_sets="$decode_sets${decode_sets:+ }$data/$s"; done
  $steps/compress_chain.sh --conf $conf --stage $stage --stop-stage $stop_stage --first-stage 8 \
    --graph-dir $first_graph --decode-sets "$decode_sets" --nj $nj --cmd "$cmd" --device $device \
    --decode-opts "$decode_opts" --baselines "$baselines" $exp $data/$train_set $data/$dev_set $lang
fi
