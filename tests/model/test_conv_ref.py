"""Integer reference of the conv engine (model/conv_ref.py): cross-checked against the
adder / AdaBin golden layers and torch's conv2d; formats round-trip; bad input is refused
with errors that name the parameter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nmaccel.model.adabin import adabin_popcounts
from nmaccel.model.adder import adder_conv2d_int
from nmaccel.model.conv_ref import (
    ConvLayerJob,
    check_job_fits,
    counters,
    get_exp_cycles,
    pack_inputs,
    pack_weights,
    random_job,
    run_job,
    unpack_outputs,
)
from nmaccel.model.quant import requant
from nmaccel.spec.config import ConfigError, ConvConfig, conv_preset

CASES = [(k, s) for k in (1, 3) for s in (1, 2)]


@pytest.mark.parametrize("k,stride", CASES)
@pytest.mark.parametrize("bits", [4, 6, 8])
def test_adder_counter_matches_adder_golden(k, stride, bits):
    rng = np.random.default_rng(bits * 10 + k + stride)
    job, x = random_job(rng, "adder", bits, k, stride, 5, 4, 7, 6)
    S = counters(job, x)
    ref = adder_conv2d_int(torch.from_numpy(x)[None], torch.from_numpy(job.weight),
                           stride, job.padding)[0].numpy()
    np.testing.assert_array_equal(S[0], ref)
    assert not S[1:].any()


@pytest.mark.parametrize("k,stride", CASES)
def test_binary_counters_match_adabin_popcounts(k, stride):
    rng = np.random.default_rng(k * 3 + stride)
    job, x = random_job(rng, "binary", 1, k, stride, 6, 5, 6, 7)
    S = counters(job, x)
    X, Pa, N, Pw = adabin_popcounts(torch.from_numpy(x)[None].bool(),
                                    torch.from_numpy(job.weight).bool(), stride, job.padding)
    for got, want in zip(S, (X[0], Pa[0, 0], N[0, 0], Pw[0])):
        np.testing.assert_array_equal(got, np.broadcast_to(want.numpy(), got.shape))


@pytest.mark.parametrize("k,stride", CASES)
def test_mul_counter_and_requant_match_torch(k, stride):
    rng = np.random.default_rng(k + 7 * stride)
    job, x = random_job(rng, "mul", 8, k, stride, 3, 4, 5, 5)
    v, q = run_job(job, x)
    acc = F.conv2d(torch.from_numpy(x)[None].double(), torch.from_numpy(job.weight).double(),
                   stride=stride, padding=job.padding)[0].round().long().numpy()
    np.testing.assert_array_equal(v, job.coef[:, 0, None, None] * acc + job.bias[:, None, None])
    want = np.moveaxis(requant(np.moveaxis(v, 0, -1), job.mult, job.shift, job.out_bits,
                               job.out_signed, mult_bits=31), -1, 0)
    np.testing.assert_array_equal(q, want)


def test_binarize_is_v_positive():
    job, x = random_job(np.random.default_rng(3), "binary", 1, 3, 1, 4, 3, 5, 5, "binarize")
    v, q = run_job(job, x)
    np.testing.assert_array_equal(q, (v > 0).astype(np.int64))


def test_pack_roundtrip_and_prediction_fields():
    cfg = ConvConfig(p_out=3, p_in=2, max_width=8, max_height=8, max_in_channels=8,
                     max_out_channels=8)
    job, x = random_job(np.random.default_rng(0), "adder", 4, 3, 2, 5, 4, 6, 6)
    beats = pack_inputs(job, cfg, x)
    assert len(beats) == 6 * 6 * 3
    assert beats[0] & 0xFF == x[0, 0, 0] and (beats[0] >> 8) & 0xFF == x[1, 0, 0]
    assert len(pack_weights(job, cfg)) == 2 * 9 * 3
    v, q = run_job(job, x)
    # build the output beats the engine would send and unpack them again
    out = []
    ho, wo = job.out_hw
    for yy in range(ho):
        for xx in range(wo):
            for ot in range(2):
                word = 0
                for lane in range(3):
                    o = ot * 3 + lane
                    if o < job.cout:
                        word |= (int(q[o, yy, xx]) & 0xFF) << (8 * lane)
                        word |= (int(v[o, yy, xx]) & (2**32 - 1)) << (24 + 32 * lane)
                out.append(word)
    v2, q2 = unpack_outputs(job, cfg, out)
    np.testing.assert_array_equal(v2, v)
    np.testing.assert_array_equal(q2, q)
    exp = get_exp_cycles(job, cfg)
    assert exp["compute"] == ho * wo * 2 * 3 * 9
    assert exp["total"] == exp["compute"] + exp["load"] + exp["overhead"]


def _job(**kw):
    args = dict(mode="adder", weight=np.zeros((2, 3, 3, 3), dtype=np.int64), height=4, width=4,
                coef=np.zeros((2, 4), dtype=np.int64), bias=0, mult=1, shift=0, padding=1,
                bits=4)
    args.update(kw)
    return ConvLayerJob(**args)


@pytest.mark.parametrize("kw,match", [
    (dict(bits=5), r"bits must be one of \(4, 6, 8\) for adder layers, not 5"),
    (dict(bits=3), r"bits must be one of \(4, 6, 8\)"),
    (dict(mode="mul", bits=4), "bits must be 8 for mul layers"),
    (dict(mode="xor"), "mode must be one of"),
    (dict(weight=np.zeros((2, 3, 2, 2), dtype=np.int64), padding=0),
     r"kernel size must be one of \(1, 3\), not 2"),
    (dict(weight=np.zeros((2, 3, 5, 5), dtype=np.int64), padding=0),
     r"kernel size must be one of \(1, 3\), not 5"),
    (dict(stride=3), r"stride must be one of \(1, 2\), not 3"),
    (dict(padding=2), "padding must be 0 or 1 for k=3"),
    (dict(weight=np.full((2, 3, 3, 3), 9)), r"weight values must be in \[-8, 7\]"),
    (dict(weight=np.zeros((2, 3, 3, 3))), "weight must hold integers"),
    (dict(coef=np.zeros((3, 4), dtype=np.int64)), r"coef must have shape \(2, 4\)"),
    (dict(bias=[1, 2, 3]), "bias must have 2 entries"),
    (dict(height=0), "height must be a positive integer, not 0"),
    (dict(height=1, width=1, padding=0), "larger than the padded 1x1 input"),
    (dict(out="relu"), "out must be one of"),
    (dict(out_bits=9), r"out_bits must be an integer in \[1, 8\], not 9"),
])
def test_bad_layer_parameters_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        _job(**kw)


def test_bad_activations_raise():
    job = _job()
    with pytest.raises(ValueError, match=r"activation tensor must have shape \(C_in, H, W\) = "
                                         r"\(3, 4, 4\).*not \(2, 4, 4\)"):
        run_job(job, np.zeros((2, 4, 4), dtype=np.int64))      # mismatched channel count
    with pytest.raises(ValueError, match=r"must have shape .* not \(3, 4\)"):
        run_job(job, np.zeros((3, 4), dtype=np.int64))         # wrong rank
    with pytest.raises(ValueError, match=r"activation codes must be in \[0, 15\]"):
        run_job(job, np.full((3, 4, 4), 16))
    with pytest.raises(ValueError, match="activation must hold integers"):
        run_job(job, np.zeros((3, 4, 4)))


def test_job_must_fit_the_engine():
    cfg = conv_preset("small")
    big = _job(weight=np.zeros((2, 40, 3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="C_in of layer 'adder' must be <= 32 for this engine, "
                                         "not 40"):
        check_job_fits(big, cfg)
    with pytest.raises(ValueError, match="width .* must be <= 8"):
        check_job_fits(_job(width=9), cfg)
    with pytest.raises(ValueError, match="mode 'binary' is not built"):
        check_job_fits(_job(mode="binary", bits=1), cfg.replace(modes=("adder", "mul")))
    with pytest.raises(ValueError, match="coef .* must fit 16 signed bits"):
        check_job_fits(_job(coef=np.full((2, 4), 40000)), cfg)


@pytest.mark.parametrize("kw,match", [
    (dict(p_out=0), "p_out must be a positive integer, not 0"),
    (dict(p_in=65), r"p_in must be an integer in \[1, 64\], not 65"),
    (dict(modes=("adder", "fma")), "modes must be a non-empty tuple"),
    (dict(modes=()), "modes must be a non-empty tuple"),
    (dict(acc_bits=20), r"acc_bits must be an integer in \[26, 48\], not 20"),
    (dict(out_fifo_depth=1), "out_fifo_depth must be an integer in"),
])
def test_conv_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        ConvConfig(**kw)


def test_conv_config_json_roundtrip_and_presets():
    for cfg in (ConvConfig(), conv_preset("digits"), ConvConfig(modes=("binary",))):
        assert ConvConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="unknown conv preset 'x'; expected one of"):
        conv_preset("x")
    with pytest.raises(ConfigError, match="unknown ConvConfig parameter"):
        ConvConfig.from_dict({"rows": 3})


@pytest.mark.parametrize("mode,bits", [("adder", 4), ("mul", 8)])
@pytest.mark.parametrize("k,stride", CASES)
def test_im2col_layer_is_equivalent(mode, bits, k, stride):
    from nmaccel.model.conv_ref import im2col_job, layer_input
    job, x = random_job(np.random.default_rng(k + stride), mode, bits, k, stride, 2, 3, 6, 5)
    j2 = im2col_job(job)
    assert j2.k == 1 and j2.cin == 2 * k * k
    for a, b in zip(run_job(job, x), run_job(j2, layer_input(j2, x, "im2col"))):
        np.testing.assert_array_equal(a, b)


def test_im2col_refuses_binary_and_bad_transform():
    from nmaccel.model.conv_ref import im2col_job, layer_input
    job, x = random_job(np.random.default_rng(0), "binary", 1, 3, 1, 2, 2, 4, 4)
    with pytest.raises(ValueError, match="im2col is not exact for binary layers"):
        im2col_job(job)
    with pytest.raises(ValueError, match="input transform must be one of"):
        layer_input(job, x, "transpose")
