"""The digits Transformer: MiniLM's layer structure, seeded training, the integer golden model."""

import copy

import numpy as np
import pytest
import torch

from nmaccel.model.digits import TEST_IMAGES
from nmaccel.model.digits_transformer import (
    DigitsTransformer,
    accuracy,
    classification_loss,
    digits_data,
    digits_int_program,
    predict,
    train_dense,
)
from nmaccel.model.idp import is_nm_sparse, prune_nm
from nmaccel.model.minilm import encoder_layer_float
from nmaccel.spec.config import sta_preset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    return digits_data()


@pytest.fixture(scope="module")
def trained(data):
    return train_dense(data, seed=0, steps=400, model_kwargs=dict(layers=2))


def test_layer_is_minilm_encoder_layer():
    torch.manual_seed(0)
    model = DigitsTransformer(layers=2)
    x = torch.randn(5, 8, 32)
    with torch.no_grad():
        for layer in model.layers:
            # non-trivial LayerNorm affine, so a swapped LN would show
            layer.ln1.weight.uniform_(0.5, 1.5)
            layer.ln2.bias.uniform_(-0.5, 0.5)
            batched = layer(x)
            lw = layer.layer_weights()
            single = torch.stack([encoder_layer_float(lw, xi, model.config) for xi in x])
            assert torch.allclose(batched, single, atol=1e-5)
            x = batched


def test_dims_fit_the_sta():
    model = DigitsTransformer()
    cfg = model.config
    assert cfg.d_model % 16 == 0 and cfg.d_ff % 16 == 0 and cfg.head_dim <= 64
    assert set(model.prunable_linears()) == {f"0.{n}" for n in ("q", "k", "v", "o", "ffn1", "ffn2")}
    with pytest.raises(ValueError, match=r"d_model \(30\) must be divisible by heads \(4\)"):
        DigitsTransformer(d_model=30, heads=4)
    with pytest.raises(ValueError, match="layers must be a positive integer, not 0"):
        DigitsTransformer(layers=0)
    with pytest.raises(ValueError, match=r"images must be \(B, 8, 8\)"):
        model(torch.zeros(2, 8, 7))


def test_training_is_seeded_and_learns(data, trained):
    again = train_dense(data, seed=0, steps=400, model_kwargs=dict(layers=2))
    for a, b in zip(trained.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    other = train_dense(data, seed=1, steps=20, model_kwargs=dict(layers=2))
    assert not torch.equal(other.head.weight, trained.head.weight)
    assert accuracy(trained, data.x_test, data.y_test) > 0.85     # 400 steps; ~98% at 3000


def test_integer_golden_model_matches_float_on_test_set(data, trained):
    model = copy.deepcopy(trained)
    prune_nm(model, "idp", 2, 4, 60, classification_loss, data.sampler(64), seed=0)
    assert all(is_nm_sparse(l.weight, 2, 4) for l in model.prunable_linears().values())
    prog = digits_int_program(model, sta_preset("ulx3s"), (2, 4))
    assert len(prog.layers) == 2
    for layer in prog.layers:
        for lin in layer.linears.values():
            assert lin.compressed is not None and (lin.compressed.n, lin.compressed.m) == (2, 4)
    pred_int = prog.predict(data.x_test)
    pred_float = predict(model, data.x_test).numpy()
    labels = data.y_test.numpy()
    assert pred_int.shape == (TEST_IMAGES,)
    assert (pred_int == pred_float).mean() >= 0.97
    assert abs((pred_int == labels).mean() - (pred_float == labels).mean()) <= 0.02
    # half the linear MACs of dense
    macs = prog.macs()
    assert macs["linear"] * 2 == macs["linear_dense"]


def test_layer_runner_hook_replaces_the_golden_layers(data, trained):
    prog = digits_int_program(trained, sta_preset("ulx3s"))
    calls = []

    def runner(i, layer, x):
        calls.append(i)
        return layer.forward(x)

    imgs = data.x_test[:4]
    assert np.array_equal(prog.predict(imgs, layer_runner=runner), prog.predict(imgs))
    assert calls == [0, 1] * 4
    # a wrong runner changes the answer: the hook is really on the data path
    zeros = prog.predict(imgs, layer_runner=lambda i, layer, x: np.zeros_like(x))
    assert len(set(zeros.tolist())) == 1


def test_integer_program_rejects_weights_that_are_not_nm(trained):
    with pytest.raises(ValueError, match=r"more than n=2 for 2:4 sparsity"):
        digits_int_program(trained, sta_preset("ulx3s"), (2, 4))
    with pytest.raises(ValueError, match="cfg must be a StaConfig"):
        digits_int_program(trained, "ulx3s")
