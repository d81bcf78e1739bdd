"""ANS coder of pack: bit-exact round trips, near-entropy size, clear errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asrcomp.compress import ans, huffman


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 300), max_size=3000))
def test_arbitrary_streams_round_trip(syms):
    s = np.array(syms, dtype=np.int64)
    words, meta = ans.encode(s)
    out = ans.decode(words, meta)
    assert out.dtype == np.int64 and np.array_equal(out, s)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.integers(0, 40), max_size=500), max_size=6))
def test_many_streams_share_one_stack(lists):
    streams = [np.array(x, dtype=np.int64) for x in lists]
    words, metas = ans.encode_many(streams)
    back = ans.decode_many(words, metas)
    assert len(back) == len(streams) and all(np.array_equal(a, b) for a, b in zip(back, streams))


def test_random_and_skewed_streams_are_bit_exact_and_near_entropy():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 32, size=200_000)
    # k-means-like: a bell over 32 clusters; skewed: one symbol with p = 0.97 (Huffman pays >= 1 bit)
    bell = rng.choice(32, size=400_000, p=(lambda p: p / p.sum())(np.exp(-0.5 * ((np.arange(32) - 15.5) / 6) ** 2)))
    skewed = np.where(rng.random(300_000) < 0.97, 7, rng.integers(0, 1 << 12, size=300_000))
    words, metas = ans.encode_many([uniform, bell, skewed])
    back = ans.decode_many(words, metas)
    for a, b in zip(back, (uniform, bell, skewed)):
        assert np.array_equal(a, b)
    ent = [huffman.entropy_bits(s) for s in (uniform, bell, skewed)]
    total = ans.coded_bits(words)
    assert total <= 1.001 * sum(ent)  # the target, all streams together
    assert sum(m.bits for m in metas) <= total <= sum(m.bits for m in metas) + 64
    for m, e in zip(metas, ent):  # and each stream on its own
        assert e <= m.bits <= 1.001 * e + 64
    # Huffman cannot go below 1 bit per symbol: the skewed stream shows the difference
    h = huffman.encode(skewed)
    assert h.nbits > 1.0 * len(skewed) and h.nbits > 2 * metas[2].bits  # ~1.39 against ~0.55 bit/symbol


def test_large_stream_within_a_thousandth_of_entropy():
    rng = np.random.default_rng(1)
    s = rng.geometric(0.3, size=1_000_000) - 1
    words, meta = ans.encode(s)
    assert np.array_equal(ans.decode(words, meta), s)
    assert ans.coded_bits(words) <= 1.001 * huffman.entropy_bits(s)


def test_degenerate_streams_cost_nothing():
    words, metas = ans.encode_many([np.zeros(0, int), np.full(1000, 5), np.array([3])])
    assert len(words) == 0 and [m.bits for m in metas] == [0, 0, 0]
    back = ans.decode_many(words, metas)
    assert [b.tolist() for b in back] == [[], [5] * 1000, [3]]


def test_a_different_model_or_leftover_data_is_an_error():
    s = np.array([0, 1, 1, 2, 2, 2, 3] * 50)
    words, meta = ans.encode(s)
    meta.counts = meta.counts[::-1].copy()  # what another fixed-point model would amount to
    with pytest.raises(ValueError, match="CRC mismatch"):
        ans.decode(words, meta)
    words, metas = ans.encode_many([s, s])
    with pytest.raises(ValueError, match="left over"):
        ans.decode_many(words, metas[:1])
    with pytest.raises(ValueError, match="non-negative"):
        ans.encode(np.array([1, -1]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2000), min_size=1, max_size=400), st.integers(1, 1 << 31))
def test_model_table_round_trips(syms, big):
    s = np.array(syms + [0] * (big % 3), dtype=np.int64)
    _, meta = ans.encode(s)
    meta.counts[-1] = big  # counts of any size up to 32 bits
    used, counts = ans.table_from_bytes(ans.table_bytes(meta))
    assert np.array_equal(used, meta.symbols) and np.array_equal(counts, meta.counts)
    # one byte per symbol up to the largest used while counts stay below 128
    small = ans.encode(np.arange(50))[1]
    assert len(ans.table_bytes(small)) == 50
    with pytest.raises(ValueError, match="truncated"):
        ans.table_from_bytes(b"\x85")
