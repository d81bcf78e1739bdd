"""Decoding per-frame CTC log-posteriors into words: TLG search (kaldi-decoder) and greedy.

Both take a ``(T, V)`` float32 array of log-posteriors over the token set
(column 0 = blank) and return a list of words.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from asrcomp.lang import read_symbol_table
from asrcomp.utils import InputError


@dataclass
class DecodeOptions:
    """Kaldi's FasterDecoder options and the acoustic scale applied to log-posteriors."""

    beam: float = 16.0
    max_active: int = 7000
    min_active: int = 30
    acoustic_scale: float = 1.0
    blank_penalty: float = 0.0  # subtracted from blank log-probs; >0 fights deletions


class TlgDecoder:
    """Kaldi FasterDecoder over a TLG graph; one instance decodes many utterances."""

    def __init__(self, graph_dir: str | os.PathLike, opts: DecodeOptions | None = None):
        import kaldi_decoder
        import kaldifst

        graph_dir = Path(graph_dir)
        tlg = graph_dir / "TLG.fst"
        if not tlg.is_file():
            raise InputError(tlg, "decoding graph not found", fix="run steps/make_graph.sh")
        self.opts = opts or DecodeOptions()
        self.fst = kaldifst.StdVectorFst.read(str(tlg))
        self.id2word = {i: w for w, i in read_symbol_table(graph_dir / "words.txt").items()}
        self.num_tokens = sum(1 for t in read_symbol_table(graph_dir / "tokens.txt") if not t.startswith("#"))
        fo = kaldi_decoder.FasterDecoderOptions(beam=self.opts.beam, max_active=self.opts.max_active,
                                                min_active=self.opts.min_active)
        self._decoder = kaldi_decoder.FasterDecoder(self.fst, fo)

    def decode(self, log_probs: np.ndarray) -> list[str]:
        """Best word sequence for one utterance's ``(T, V)`` log-posteriors."""
        import kaldi_decoder
        import kaldifst

        if log_probs.ndim != 2 or log_probs.shape[1] != self.num_tokens:
            raise ValueError(f"log-probs of shape {log_probs.shape} do not match the graph's "
                             f"{self.num_tokens} tokens")
        scores = np.array(log_probs, dtype=np.float32) * self.opts.acoustic_scale
        if self.opts.blank_penalty:
            scores[:, 0] -= self.opts.blank_penalty
        decodable = kaldi_decoder.DecodableCtc(scores)
        self._decoder.decode(decodable)
        ok, best = self._decoder.get_best_path()
        if not ok:
            return []
        ok, _, olabels, _ = kaldifst.get_linear_symbol_sequence(best)
        return [self.id2word[i] for i in olabels]


def ctc_greedy(log_probs: np.ndarray) -> list[int]:
    """Best token per frame, repeats collapsed, blanks (id 0) removed: token ids."""
    best = np.asarray(log_probs).argmax(axis=1)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(t) for t in best[keep] if t != 0]


def tokens_to_words(token_ids: Sequence[int], id2token: dict[int, str], token_type: str) -> list[str]:
    """Token ids back to words: BPE pieces joined at ``▁``; phones have no word boundaries,
    so a phone sequence is returned as phones (greedy phone decoding scores a PER)."""
    pieces = [id2token[i] for i in token_ids]
    if token_type == "bpe":
        return "".join(pieces).replace("\u2581", " ").split()
    return pieces
