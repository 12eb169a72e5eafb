"""The MiniLM distillation corpus: offline sources, deterministic splitter, disjoint split."""

from nmaccel.model.corpus import (
    HELD_OUT_PERMILLE,
    MAX_TOKENS,
    MAX_WORDS,
    MIN_WORDS,
    corpus_sentences,
    corpus_split,
    is_held_out,
    split_sentences,
)
from nmaccel.model.minilm import get_default_tokenizer, tokenize


def test_splitter_keeps_prose_and_drops_code():
    text = ("Return the number of items in the container. It is fast.\n\n"
            ">>> len([1, 2, 3])\n3\n\n"
            "Example::\n\n    x = compute(a, b)\n\n"
            "The value is computed once and cached for later calls by the module. "
            "Call f() with x = 1 to see the result of the computation here.")
    assert split_sentences(text) == [
        "Return the number of items in the container.",
        "The value is computed once and cached for later calls by the module."]


def test_corpus_is_large_deterministic_and_disjoint():
    split = corpus_split()
    assert len(split.train) >= 5000
    assert len(split.held_out) >= 1000
    assert not set(split.train) & set(split.held_out)
    assert len(split.train) + len(split.held_out) == len(corpus_sentences())
    assert all(is_held_out(s) for s in split.held_out)
    assert not any(is_held_out(s) for s in split.train[:500])
    assert all(MIN_WORDS <= len(s.split()) <= MAX_WORDS for s in split.held_out)
    lengths = [len(t) for t in tokenize(list(split.held_out), get_default_tokenizer(),
                                        max_len=10**6)]
    assert max(lengths) <= MAX_TOKENS
    # the split depends on the sentence alone (order-free), at the documented rate
    assert is_held_out(split.held_out[0]) and HELD_OUT_PERMILLE == 100
    fp = split.fingerprint()
    assert fp["train"] == len(split.train) and len(fp["held_out_sha256"]) == 16
