"""Shipped sparse MiniLM students: the files load, are N:M, run; bad files get clear errors."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from nmaccel.model.encoder_int import prune_layer_weights
from nmaccel.model.idp import is_nm_sparse
from nmaccel.model.minilm import get_default_weights
from nmaccel.model.minilm_sparse import (
    SparseModelError,
    load_sparse_minilm,
    resolve_weights,
    save_sparse_minilm,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    w = get_default_weights()
    sw = replace(w, layers=[prune_layer_weights(lw, (1, 4)) for lw in w.layers])
    path = tmp_path_factory.mktemp("sparse") / "m.npz"
    save_sparse_minilm(sw, 1, 4, path, {"command": "test"})
    return path, sw


def _rewrite(src, dst, change):
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    np.savez(dst, **arrays)
    return dst


def test_round_trip_is_exact_int8(small_file):
    path, sw = small_file
    got, meta = load_sparse_minilm(path)
    assert meta["provenance"] == {"command": "test"}
    for a, b in zip(sw.layers, got.layers):
        assert torch.allclose(a.w2, b.w2, atol=float(a.w2.abs().max()) / 127)
        assert torch.equal(a.ln1_g, b.ln1_g) and torch.equal(a.b1, b.b1)
        assert is_nm_sparse(b.w1, 1, 4)


def test_corrupt_truncated_file_is_refused(small_file, tmp_path):
    path, _ = small_file
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SparseModelError, match="not a readable sparse MiniLM file"):
        load_sparse_minilm(bad)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(SparseModelError, match="corrupt"):
        load_sparse_minilm(tmp_path / "text.npz")
    with pytest.raises(SparseModelError, match="does not exist"):
        load_sparse_minilm(tmp_path / "none.npz")


def test_wrong_shape_dtype_and_missing_arrays_are_named(small_file, tmp_path):
    path, _ = small_file

    def shape(a):
        a["L2.ffn1.values"] = a["L2.ffn1.values"][:100]
    with pytest.raises(SparseModelError, match=r"L2.ffn1.values has shape \(100, 96, 1\), "
                                                r"expected \(1536, 96, 1\)"):
        load_sparse_minilm(_rewrite(path, tmp_path / "s.npz", shape))

    def dtype(a):
        a["L0.q.scale"] = a["L0.q.scale"].astype(np.float64)
    with pytest.raises(SparseModelError, match="L0.q.scale has dtype float64"):
        load_sparse_minilm(_rewrite(path, tmp_path / "d.npz", dtype))

    def missing(a):
        del a["L5.ln2_b"]
    with pytest.raises(SparseModelError, match="'L5.ln2_b' is missing"):
        load_sparse_minilm(_rewrite(path, tmp_path / "m.npz", missing))


def test_not_nm_wrong_format_and_other_base_are_refused(small_file, tmp_path):
    path, _ = small_file

    def meta_edit(**changes):
        def change(a):
            meta = json.loads(bytes(a["meta"]))
            meta.update(changes)
            a["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        return change

    # claim 2:4 for 1:4 data: shapes no longer fit
    for name, changes, message in (
            ("n", {"pattern": "2:4"}, "expected"),
            ("f", {"format": "something-else/9"}, "format 'something-else/9'"),
            ("b", {"base_fingerprint": "0" * 64}, "other dense MiniLM weights")):
        with pytest.raises(SparseModelError, match=message):
            load_sparse_minilm(_rewrite(path, tmp_path / f"{name}.npz", meta_edit(**changes)))

    def saturated(a):
        a["L1.v.values"] = a["L1.v.values"].copy()
        a["L1.v.values"][0, 0, 0] = -128
    with pytest.raises(SparseModelError, match="-128"):
        load_sparse_minilm(_rewrite(path, tmp_path / "v.npz", saturated))


def test_out_of_range_indices_are_not_nm(tmp_path):
    w = get_default_weights()
    sw = replace(w, layers=[prune_layer_weights(lw, (2, 4)) for lw in w.layers])
    path = save_sparse_minilm(sw, 2, 4, tmp_path / "a.npz")

    def dup(a):                     # every packed index 0: groups [0, 0] are not ascending
        a["L3.o.indices"] = np.zeros_like(a["L3.o.indices"])
    with pytest.raises(SparseModelError, match="L3.o is not valid 2:4.*not strictly ascending"):
        load_sparse_minilm(_rewrite(path, tmp_path / "i.npz", dup))
    shutil.copy(path, tmp_path / "ok.npz")
    assert is_nm_sparse(load_sparse_minilm(tmp_path / "ok.npz")[0].layers[3].wo, 2, 4)


def test_saving_a_dense_model_as_nm_is_refused(tmp_path):
    with pytest.raises(ValueError, match="more than n=2"):
        save_sparse_minilm(get_default_weights(), 2, 4, tmp_path / "dense.npz")


def test_weight_choice_checked():
    assert resolve_weights(None, "shipped")[1] == "dense"
    assert resolve_weights((2, 8), "auto")[1] == "magnitude"
    with pytest.raises(SparseModelError, match="no sparse MiniLM student ships for 2:8"):
        resolve_weights((2, 8), "shipped")
    with pytest.raises(ValueError, match="weights must be one of"):
        resolve_weights((2, 4), "best")


def test_lazy_load_checks_the_file_now_and_each_layer_when_used(small_file, tmp_path):
    """``lazy=True`` (the shipped students): metadata and the presence of every array are
    checked at once; a file seen before (its fingerprint remembered) has each layer decoded,
    checked and kept when first used, equal to the eager load's; a file seen for the first
    time is decoded whole for its fingerprint, so a bad layer fails the load."""
    path, _ = small_file
    eager, _ = load_sparse_minilm(path)                         # fingerprint remembered
    lazy, meta = load_sparse_minilm(path, lazy=True)
    assert meta["pattern"] == "1:4" and len(lazy.layers) == 6
    assert lazy.layers._layers == [None] * 6                    # nothing decoded yet
    assert torch.equal(lazy.layers[2].w1, eager.layers[2].w1)
    assert [x is not None for x in lazy.layers._layers] == [False, False, True] + [False] * 3
    assert lazy.layers[2] is lazy.layers[2]                     # decoded once
    assert [torch.equal(a.wq, b.wq) for a, b in zip(lazy.layers, eager.layers)] == [True] * 6
    assert torch.equal(lazy.layers[-1].b2, eager.layers[5].b2)
    assert len(lazy.layers[1:3]) == 2

    def bad_values(a):
        a["L4.q.values"] = a["L4.q.values"][:, :-1]
    with pytest.raises(SparseModelError, match="L4.q.values has shape"):
        load_sparse_minilm(_rewrite(path, tmp_path / "l.npz", bad_values), lazy=True)

    def missing(a):
        del a["L5.q.scale"]
    with pytest.raises(SparseModelError, match="'L5.q.scale' is missing"):
        load_sparse_minilm(_rewrite(path, tmp_path / "m2.npz", missing), lazy=True)
