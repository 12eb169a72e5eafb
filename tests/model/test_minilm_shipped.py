"""The students that ship in the package (model/trained/minilm_l6_*.npz): every shipped
pattern's file is present, loads through the validating loader, is N:M in every pruned linear,
carries its provenance, and runs: on held-out corpus sentences its float and integer
embeddings reproduce the quality its provenance records (within a stated bound)."""

import pytest
import torch
import torch.nn.functional as F

from nmaccel.model.corpus import corpus_split
from nmaccel.model.idp import is_nm_sparse
from nmaccel.model.minilm import get_default_weights
from nmaccel.model.minilm_sparse import SHIPPED, load_sparse_minilm, shipped_path
from nmaccel.model.minilm_study import float_embeddings, int8_embeddings

torch.set_num_threads(1)

#: held-out sentences embedded per pattern (a sample: the provenance's figures are over all)
SAMPLE = 48
#: the sample's mean cosine may fall below the recorded all-sentence mean by at most this
#: (measured: this sample's float mean is within 0.002 of the recorded one for the shipped
#: files; magnitude pruning, what a wrong file would most likely hold, is 0.3 below at 2:4)
BOUND = 0.05

PROVENANCE = ("command", "method", "seed", "budget", "corpus", "train_seconds", "metrics")


@pytest.fixture(scope="module")
def held_out():
    held = list(corpus_split().held_out)
    return held[:: max(1, len(held) // SAMPLE)][:SAMPLE]


@pytest.mark.parametrize("nm", sorted(SHIPPED), ids=lambda nm: f"{nm[0]}of{nm[1]}")
def test_shipped_student_loads_is_nm_and_runs(nm, held_out):
    path = shipped_path(nm)
    assert path.is_file(), f"{path} does not ship"
    weights, meta = load_sparse_minilm(path)
    assert meta["pattern"] == f"{nm[0]}:{nm[1]}" and meta["layers"] == 6
    prov = meta["provenance"]
    assert all(key in prov for key in PROVENANCE), sorted(prov)
    assert prov["command"].startswith("nmaccel idp --study minilm-ship")
    for i, layer in enumerate(weights.layers):
        for name, (w, _) in layer.linears().items():
            assert is_nm_sparse(w, *nm), f"layer {i} {name}"
    ref = float_embeddings(get_default_weights(), held_out)
    got = float_embeddings(weights, held_out)
    cos = F.cosine_similarity(got.double(), ref.double(), dim=-1)
    assert float(cos.mean()) >= prov["metrics"]["float"]["cos_mean"] - BOUND
    got8 = int8_embeddings(weights, nm, held_out[:8])
    cos8 = F.cosine_similarity(got8.double(), ref[:8].double(), dim=-1)
    assert float(cos8.mean()) >= prov["metrics"]["int8"]["cos_mean"] - 2 * BOUND


def test_the_rtl_check_needs_the_golden_number_formats():
    """The RTL section runs on ``ulx3s`` (buffers for the corpus's 64-token sentences; on
    ``ulx3s_board`` it stopped after minutes on a 41-token one); a preset whose number
    formats differ from the integer golden's is refused before any work."""
    import pytest

    from nmaccel.studies.idp import minilm_rtl
    with pytest.raises(ValueError, match="must have the number formats of ulx3s_board"):
        minilm_rtl(["2:4"], 1, preset="tiny")


def test_fingerprints_of_loaded_weights_are_remembered_and_follow_the_files(tmp_path,
                                                                            monkeypatch):
    """Weights loaded from files get their fingerprint from a memo keyed by the files' path,
    size and modification time (hashing took 0.1 s of every run); a changed file is hashed
    again, and weights that no file names are always hashed."""
    import dataclasses
    import json
    import os

    from nmaccel.model import minilm
    monkeypatch.setenv("NMACCEL_CACHE", str(tmp_path))
    w = minilm.get_default_weights()
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    first = dataclasses.replace(w)
    assert minilm.remember_fingerprint(first, [f]) == minilm._hash_weights(w)
    assert minilm.weights_fingerprint(first) == minilm._hash_weights(w)
    memo = tmp_path / "fingerprints" / "minilm_weights.json"
    data = json.loads(memo.read_text())
    data = {key: "planted" for key in data}                 # a memo hit is not recomputed
    memo.write_text(json.dumps(data))
    second = dataclasses.replace(w)
    assert minilm.remember_fingerprint(second, [f]) == "planted"
    os.utime(f, ns=(1, 2))                                   # the file changed: hashed again
    assert minilm.remember_fingerprint(second, [f]) == minilm._hash_weights(w)
    assert minilm.weights_fingerprint(dataclasses.replace(w)) == minilm._hash_weights(w)
