"""Tests for the synthetic corpus task grammar (local/synth/grammar.py)."""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from local.synth import grammar
from local.synth.grammar import DOMAINS, check_in_cmudict, generate_sentences, vocabulary

REPO = Path(__file__).resolve().parents[1]
SENTENCE_RE = re.compile(r"[A-Z']+( [A-Z']+)*")
SAMPLE_SIZE = 30000


@pytest.fixture(scope="module")
def sample() -> list[str]:
    return generate_sentences(SAMPLE_SIZE, seed=1234)


def test_domains_include_required_ones():
    for d in ("naval", "flight", "numbers", "commands"):
        assert d in DOMAINS
    assert len(set(DOMAINS)) == len(DOMAINS)


def test_vocabulary_is_large_sorted_and_in_cmudict():
    vocab = vocabulary()
    assert len(vocab) >= 800
    assert vocab == sorted(set(vocab))
    assert all(re.fullmatch(r"[A-Z']+", w) for w in vocab)
    assert check_in_cmudict(vocab) == []


def test_check_in_cmudict_reports_missing_words():
    assert check_in_cmudict(["HELLO", "QZXWVBLORT", "SHIP", "QZXWVBLORT"]) == ["QZXWVBLORT"]
    assert check_in_cmudict([]) == []


def test_sentences_have_valid_length_and_characters(sample):
    assert len(sample) == SAMPLE_SIZE
    for s in sample:
        assert SENTENCE_RE.fullmatch(s), s
        assert grammar.MIN_WORDS <= len(s.split()) <= grammar.MAX_WORDS, s


def test_sample_covers_vocabulary(sample):
    vocab = set(vocabulary())
    used = Counter(w for s in sample for w in s.split())
    assert set(used) <= vocab, sorted(set(used) - vocab)[:20]
    assert len(used) >= 800
    # vocabulary() walks the grammar; nearly all of it must also be reachable in
    # practice, or the lexicon would carry words that are never spoken.
    assert len(used) >= 0.98 * len(vocab), sorted(vocab - set(used))[:20]


def test_duplicate_rate_is_small(sample):
    first = sample[:20000]
    dup_rate = 1 - len(set(first)) / len(first)
    assert dup_rate < 0.05, dup_rate


def test_same_seed_same_sentences():
    assert generate_sentences(300, seed=7) == generate_sentences(300, seed=7)
    assert generate_sentences(300, seed=7, domains=["flight"]) == \
        generate_sentences(300, seed=7, domains=["flight"])


def test_different_seed_different_sentences():
    a, b = generate_sentences(300, seed=7), generate_sentences(300, seed=8)
    assert a != b
    assert sum(x == y for x, y in zip(a, b)) < 30


def test_does_not_use_or_disturb_global_random_state():
    random.seed(0)
    a = generate_sentences(50, seed=3)
    after_a = random.random()
    random.seed(99)
    b = generate_sentences(50, seed=3)
    random.seed(0)
    assert a == b
    assert random.random() == after_a


@pytest.mark.parametrize("hashseed", ["0", "4242"])
def test_deterministic_across_processes_and_hash_seeds(hashseed):
    code = ("import json; from local.synth.grammar import generate_sentences, vocabulary; "
            "print(json.dumps([generate_sentences(500, 11), vocabulary()]))")
    env = dict(os.environ, PYTHONHASHSEED=hashseed,
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout
    sentences, vocab = json.loads(out)
    assert sentences == generate_sentences(500, 11)
    assert vocab == vocabulary()


@pytest.mark.parametrize("domain", DOMAINS)
def test_each_domain_produces_its_own_sentences(domain):
    sents = generate_sentences(200, seed=5, domains=[domain])
    assert len(sents) == 200
    assert all(SENTENCE_RE.fullmatch(s) for s in sents)
    assert len(set(sents)) > 180
    # A domain's sentences should mostly not be producible by sampling the others.
    others = set(generate_sentences(2000, seed=5,
                                    domains=[d for d in DOMAINS if d != domain]))
    assert not set(sents) & others


def test_domains_are_mixed_round_robin():
    # Classify each mixed sentence with a unigram naive-Bayes model trained on
    # single-domain samples; round-robin mixing means sentence i is DOMAINS[i % k].
    counts = {d: Counter(w for s in generate_sentences(2000, seed=1, domains=[d])
                         for w in s.split()) for d in DOMAINS}
    vocab_size = len(vocabulary())

    def classify(sentence: str) -> str:
        def score(d: str) -> float:
            total = sum(counts[d].values()) + vocab_size
            return sum(math.log((counts[d][w] + 1) / total) for w in sentence.split())
        return max(DOMAINS, key=score)

    mixed = generate_sentences(12 * len(DOMAINS), seed=9)
    hits = sum(classify(s) == DOMAINS[i % len(DOMAINS)] for i, s in enumerate(mixed))
    assert hits >= 0.9 * len(mixed)


def test_unknown_domain_raises_value_error_naming_valid_ones():
    with pytest.raises(ValueError, match="naval"):
        generate_sentences(10, seed=0, domains=["naval", "cooking"])
    with pytest.raises(ValueError, match="cooking"):
        generate_sentences(10, seed=0, domains=["cooking"])
    with pytest.raises(ValueError):
        generate_sentences(10, seed=0, domains=[])
    with pytest.raises(ValueError):
        generate_sentences(-1, seed=0)


def test_zero_sentences():
    assert generate_sentences(0, seed=0) == []


def test_every_template_can_yield_a_valid_sentence():
    slots, templates = grammar._compiled()
    rng = random.Random(0)
    for domain, nodes in templates.items():
        for text, node in zip(grammar.TEMPLATES[domain], nodes):
            lengths = []
            for _ in range(30):
                words: list[str] = []
                grammar._expand(node, rng, slots, words)
                lengths.append(len(words))
            assert any(grammar.MIN_WORDS <= n <= grammar.MAX_WORDS for n in lengths), text


@pytest.mark.parametrize("bad", ["A ( B", "A ] B", "A [ B )", "A (B | C", "a b c", "A, B"])
def test_parser_rejects_malformed_templates(bad):
    with pytest.raises(ValueError):
        grammar._parse(bad)


def test_parser_accepts_nested_syntax():
    node = grammar._parse("A [B (C | D [E])] <digit>")
    rng = random.Random(0)
    seen = set()
    for _ in range(200):
        words: list[str] = []
        grammar._expand(node, rng, {"digit": (("w", "ONE"),)}, words)
        seen.add(" ".join(words))
    assert seen == {"A ONE", "A B C ONE", "A B D ONE", "A B D E ONE"}
