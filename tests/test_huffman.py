"""Canonical Huffman coder: arbitrary streams round-trip (empty, one symbol, many blocks),
the code is prefix-free and optimal-length, and length limiting holds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asrcomp.compress import huffman as H

streams = st.lists(st.integers(min_value=0, max_value=40), max_size=600)


@settings(max_examples=150, deadline=None)
@given(streams, st.sampled_from([1, 3, 64, 4096]))
def test_arbitrary_streams_round_trip(syms, block):
    x = np.array(syms, dtype=np.int64)
    enc = H.encode(x, block=block)
    out = H.decode(enc)
    assert out.dtype == np.int64 and np.array_equal(out, x)
    if len(set(syms)) <= 1:
        assert enc.data == b"" and enc.nbits == 0  # empty or one distinct symbol: no bits
    else:
        # a Huffman code is within one bit per symbol of the entropy, and never below it
        ent = H.entropy_bits(x)
        assert ent - 1e-6 <= enc.nbits <= ent + len(x)


@settings(max_examples=40, deadline=None)
@given(st.lists(streams, min_size=1, max_size=5))
def test_many_streams_decode_together(lists):
    encs = [H.encode(np.array(s, dtype=np.int64), block=7) for s in lists]
    for s, out in zip(lists, H.decode_many(encs)):
        assert out.tolist() == s


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=2, max_size=300))
def test_code_lengths_are_a_prefix_code(counts):
    c = np.array(counts)
    ln = H.code_lengths(c)
    used = c > 0
    assert np.all((ln > 0) == used) or used.sum() <= 1
    if used.sum() > 1:
        assert np.sum(2.0 ** -ln[used].astype(float)) <= 1.0 + 1e-12  # Kraft
        codes = H.canonical_codes(ln)
        words = sorted(format(int(codes[i]), f"0{ln[i]}b") for i in np.flatnonzero(used))
        assert all(not b.startswith(a) for a, b in zip(words, words[1:]))  # prefix-free


def test_length_limit_on_exponential_counts():
    counts = np.array([2 ** i for i in range(40)], dtype=np.int64)  # unlimited Huffman: depth 39
    ln = H.code_lengths(counts, max_len=16)
    assert ln.max() <= 16 and np.sum(2.0 ** -ln.astype(float)) <= 1.0
    x = np.repeat(np.arange(40), np.minimum(counts, 50))
    assert np.array_equal(H.decode(H.encode(x, lengths=ln)), x)


def test_large_stream_is_close_to_entropy():
    rng = np.random.default_rng(0)
    x = np.clip(np.round(rng.normal(16, 5, 300_000)), 0, 31).astype(np.int64)
    enc = H.encode(x, 32)
    assert np.array_equal(H.decode(enc), x)
    assert enc.nbits <= 1.01 * H.entropy_bits(x)


def test_symbol_outside_alphabet_or_without_code_is_an_error():
    with pytest.raises(ValueError, match="outside the alphabet"):
        H.encode(np.array([0, 5]), alphabet=4)
    with pytest.raises(ValueError, match="no code"):
        H.encode(np.array([0, 1, 3]), lengths=np.array([1, 1], dtype=np.uint8))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 60), max_size=3000), st.sampled_from([16, 4096]))
def test_cost_is_what_encode_spends(syms, block):
    s = np.array(syms, dtype=np.int64)
    enc = H.encode(s, block=block)
    assert H.cost(s, block=block) == (enc.nbits, len(enc.lengths) + 4 * len(enc.offsets))
