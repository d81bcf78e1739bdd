#!/usr/bin/env bash
# Usage: steps/prepare_lang.sh [--token-type bpe|phone] [--bpe-vocab-size 500] [--bpe-text FILE]
#          [--lexicon lexicon.txt] [--keep-stress false] <lang-dir> <word-source>...
# Lexicon (the given Kaldi lexicon.txt, CMUdict for the words it lacks), tokens (phones or
# sentencepiece BPE), words.txt, L_disambig.fst.
set -euo pipefail
echo "$0 $*"
token_type=bpe; bpe_vocab_size=500; bpe_text=""; lexicon=""; keep_stress=false
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -ge 2 ] || { echo "usage: $0 [options] <lang-dir> <word-source>..." >&2; exit 1; }
lang=$1; shift
extra=""; [ "$keep_stress" = true ] && extra=--keep-stress
mkdir -p "$(dirname "$lang")/log"
exec asrcomp --log-file "$(dirname "$lang")/log/prepare_$(basename "$lang").log" prepare-lang \
  --token-type "$token_type" --bpe-vocab-size "$bpe_vocab_size" ${bpe_text:+--bpe-text "$bpe_text"} \
  ${lexicon:+--lexicon "$lexicon"} $extra "$lang" "$@"
