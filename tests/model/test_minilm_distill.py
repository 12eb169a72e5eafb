"""MiniLM-L6 layer-wise distillation: batched layers, pruning, embeddings."""

from dataclasses import replace

import pytest
import torch

from nmaccel.model.corpus import corpus_split
from nmaccel.model.digits_transformer import EncoderLayer
from nmaccel.model.idp import is_nm_sparse
from nmaccel.model.minilm import (
    embed_sentences_float,
    embed_tokens,
    encoder_layer_float,
    get_default_tokenizer,
    get_default_weights,
    tokenize,
)
from nmaccel.model.minilm_distill import distill_minilm, embed, teacher_states

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_layer():
    w = get_default_weights()
    return replace(w, layers=w.layers[:1])


@pytest.fixture(scope="module")
def texts():
    return list(corpus_split().train[:12])


def test_batched_padded_layer_equals_minilm_reference():
    w = get_default_weights()
    layer = EncoderLayer.from_layer_weights(w.layers[0], w.config.heads, w.config.ln_eps)
    ids = tokenize(["A short one here.", "A much longer sentence that has quite a few more "
                    "tokens than the first one does."], get_default_tokenizer())
    xs = [embed_tokens(w, i) for i in ids]
    seq = max(x.shape[0] for x in xs)
    batch = torch.zeros(2, seq, w.config.d_model)
    mask = torch.zeros(2, seq, dtype=torch.bool)
    for i, x in enumerate(xs):
        batch[i, : x.shape[0]], mask[i, : x.shape[0]] = x, True
    with torch.no_grad():
        out = layer(batch, mask)
        for i, x in enumerate(xs):
            ref = encoder_layer_float(w.layers[0], x, w.config)
            assert torch.allclose(out[i, : x.shape[0]], ref, atol=1e-4)


def test_dense_layers_reproduce_the_float_embeddings():
    w = get_default_weights()
    layers = [EncoderLayer.from_layer_weights(lw, w.config.heads, w.config.ln_eps)
              for lw in w.layers]
    texts = ["Sparse weights save memory.", "The cat sat on the mat."]
    got, ref = embed(layers, texts), embed_sentences_float(texts)
    assert torch.nn.functional.cosine_similarity(got, ref).min() > 0.99999


def test_distillation_prunes_and_beats_plain_magnitude(one_layer, texts):
    teacher = teacher_states(texts, one_layer)
    _, mag = distill_minilm("magnitude", 2, 4, 1, texts=texts, weights=one_layer,
                            teacher=teacher)
    for method in ("idp", "oneshot", "srste"):
        layers, info = distill_minilm(method, 2, 4, 8, texts=texts, weights=one_layer,
                                      teacher=teacher, batch_size=4)
        assert info[0]["steps"] == 8
        for name, lin in layers[0].linears().items():
            assert is_nm_sparse(lin.weight, 2, 4), (method, name)
        assert info[0]["mse_to_dense"] < 0.9 * mag[0]["mse_to_dense"], method
    assert info[0]["mse_to_dense"] > 0        # pruned: not the dense layer


def test_bad_input(one_layer, texts):
    with pytest.raises(ValueError, match="budget must be a positive integer .*not 0"):
        distill_minilm("idp", 2, 4, 0, texts=texts, weights=one_layer)
    with pytest.raises(ValueError, match=r"n must satisfy 1 <= n < m \(m=4\), not 4"):
        distill_minilm("idp", 4, 4, 5, texts=texts, weights=one_layer)
    with pytest.raises(ValueError, match="teacher must be teacher_states"):
        distill_minilm("oneshot", 2, 4, 5, texts=texts, weights=one_layer,
                       teacher=teacher_states(texts[:3], one_layer))


def test_study_json_renders_through_the_cli(one_layer, texts, tmp_path):
    import json

    from nmaccel.cli import main
    from nmaccel.model.minilm_study import minilm_markdown, minilm_study
    held = list(corpus_split().held_out[:12])
    res = minilm_study([(2, 4)], ["idp", "srste"], 1, 2, 2, weights=one_layer,
                       texts=(texts, held), batch_size=4, layer_texts=6, int8=False)
    assert res["plan"]["patterns"] == ["2:4"]
    cells = res["summary"]["2:4"]
    # distillation must help over plain magnitude pruning, for every method
    assert min(cells[m]["float"]["cos_mean"][0] for m in ("idp", "srste")) > \
        res["baselines"]["2:4"]["float"]["cos_mean"]
    md = minilm_markdown(res, "cmd", 1.0)
    assert "| 2:4 | IDP" in md and "IDP − SR-STE" in md
    res.update(command="cmd", wall_seconds=1.0)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(res))
    assert main(["idp", "--render", str(path), "--minilm-md", str(tmp_path / "m.md")]) == 0
    assert (tmp_path / "m.md").read_text() == md
