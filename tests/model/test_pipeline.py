"""Integer MiniLM pipelines against the float reference, and the encoder layer's contracts."""

import numpy as np
import pytest

from nmaccel.model.encoder_int import parse_nm
from nmaccel.model.minilm import DEMO_SENTENCES, embed_sentences_float, tokenize
from nmaccel.model.pipeline import QuantizedMiniLM, calibration_sentences, cosine
from nmaccel.spec.config import sta_preset

CFG = sta_preset("ulx3s")


@pytest.fixture(scope="module")
def float_embeddings():
    return embed_sentences_float(DEMO_SENTENCES)


@pytest.fixture(scope="module")
def dense_model():
    return QuantizedMiniLM(CFG, None)


def test_calibration_text_is_real_and_disjoint_from_evaluation():
    calib = calibration_sentences()
    assert len(calib) == 16
    assert not set(calib) & set(DEMO_SENTENCES)


def test_int8_dense_pipeline_matches_float(dense_model, float_embeddings):
    cos = cosine(dense_model.embed(DEMO_SENTENCES), float_embeddings)
    print(f"int8 dense cosine: mean {cos.mean():.4f} min {cos.min():.4f}")
    assert cos.mean() >= 0.99


def test_layer_output_is_deterministic_and_in_range(dense_model):
    ids = tokenize(DEMO_SENTENCES[:1], dense_model.tokenizer)[0]
    trace: dict = {}
    x = dense_model.quantize_input(ids)
    out = dense_model.layers[0].forward(x, trace)
    np.testing.assert_array_equal(out, dense_model.layers[0].forward(x))
    assert out.shape == (len(ids), 384)
    assert trace["probs"].shape == (12, len(ids), len(ids))
    assert np.abs(trace["x8"]).max() <= 128 and trace["probs"].max() <= 255


@pytest.mark.parametrize("nm", [(2, 4), (1, 8)])
def test_sparse_layer_runs_from_compressed_weights(nm):
    """The sparse GEMMs (gather by stored index) equal dense GEMMs on the decompressed weights."""
    model = QuantizedMiniLM(CFG, nm, calib_texts=calibration_sentences(4))
    layer = model.layers[0]
    ids = tokenize(DEMO_SENTENCES[:1], model.tokenizer)[0]
    x = model.quantize_input(ids)
    sparse_out = layer.forward(x)
    for lin in layer.linears.values():
        groups = lin.w.reshape(lin.w.shape[0], -1, nm[1])
        assert ((groups != 0).sum(-1) <= nm[0]).all()
        lin.compressed = None                                 # force the dense path
    np.testing.assert_array_equal(layer.forward(x), sparse_out)
    macs = layer.macs(len(ids))
    assert macs["linear"] * nm[1] == macs["linear_dense"] * nm[0]


def test_layer_bad_input(dense_model):
    layer = dense_model.layers[0]
    with pytest.raises(ValueError, match=r"layer input must be \(tokens, 384\)"):
        layer.forward(np.zeros((4, 383), dtype=np.int64))
    with pytest.raises(ValueError, match="exceeds max_seq=256"):
        layer.forward(np.zeros((257, 384), dtype=np.int64))


@pytest.mark.parametrize("text, expected", [("2:4", (2, 4)), ("dense", None), (None, None),
                                            ("1:16", (1, 16))])
def test_parse_nm(text, expected):
    assert parse_nm(text) == expected


@pytest.mark.parametrize("text, message", [("4:4", r"n must satisfy 1 <= n < m \(m=4\), not 4"),
                                           ("2:6", "m must be a power of two"),
                                           ("two:four", "N:M pattern must look like")])
def test_parse_nm_bad(text, message):
    with pytest.raises(ValueError, match=message):
        parse_nm(text)


def test_calibration_is_cached_under_a_key_that_covers_its_inputs(tmp_path, monkeypatch):
    """A second QuantizedMiniLM with the same inputs loads the calibrated layers (bit-equal);
    another pattern, layer count or calibration text set calibrates anew."""
    import numpy as np

    from nmaccel.model.pipeline import QuantizedMiniLM, calibration_key
    from nmaccel.model.sta_workloads import minilm_tokens
    from nmaccel.spec.config import sta_preset
    monkeypatch.setenv("NMACCEL_CACHE", str(tmp_path))
    cfg = sta_preset("tiny").replace(max_seq=64)
    texts = ["The quick brown fox jumps over the lazy dog.", "Sparse models run fast."]
    first = QuantizedMiniLM(cfg, (2, 4), calib_texts=texts, num_layers=1)
    files = list((tmp_path / "calibration").glob("*.pkl"))
    assert len(files) == 1
    again = QuantizedMiniLM(cfg, (2, 4), calib_texts=texts, num_layers=1)
    ids = minilm_tokens(16)
    assert np.array_equal(first.encode(ids), again.encode(ids))
    def key(**change):
        args = dict(cfg=cfg, nm=(2, 4), weights=first.weights, tokenizer=first.tokenizer,
                    texts=texts, num_layers=1)
        return calibration_key(**dict(args, **change))
    keys = {key(), key(num_layers=2), key(texts=texts[:1]), key(nm=None),
            key(cfg=cfg.replace(vec_bits=12))}
    assert len(keys) == 5
    files[0].write_bytes(b"truncated")                 # a broken file: calibrated again
    assert np.array_equal(QuantizedMiniLM(cfg, (2, 4), calib_texts=texts,
                                          num_layers=1).encode(ids), first.encode(ids))
