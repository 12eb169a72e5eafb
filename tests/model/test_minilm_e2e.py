"""End-to-end QAT distillation of MiniLM students, retrieval metrics, the study (small)."""

from dataclasses import replace

import pytest
import torch

from nmaccel.model.idp import is_nm_sparse
from nmaccel.model.minilm import embed_tokens, get_default_tokenizer, get_default_weights, tokenize
from nmaccel.model.minilm_e2e import (
    Student,
    distill_e2e,
    embedding_metrics,
    pad_batch,
    qat_scales,
    rank_kl,
    retrieval_agreement,
    student_weights,
    teacher_neighbours,
)
from nmaccel.model.pipeline import QuantizedMiniLM, calibration_sentences
from nmaccel.spec.config import sta_preset

torch.set_num_threads(1)
TEXTS = ["Return the number of items in the container.", "The cat sat on the warm mat.",
         "Sparse weights save memory on the accelerator.", "Open the file and read a line.",
         "A lock is released when the block ends.", "Each call returns a new iterator object."]


@pytest.fixture(scope="module")
def one_layer():
    w = get_default_weights()
    return replace(w, layers=w.layers[:1])


def test_qat_forward_follows_the_integer_pipeline(one_layer):
    cfg = sta_preset("ulx3s_board")
    student = Student.from_weights(one_layer).eval()
    scales = qat_scales(student, one_layer, calibration_sentences())
    qm = QuantizedMiniLM(cfg, None, weights=one_layer, cache=False)
    ids = tokenize(TEXTS[:3], get_default_tokenizer())
    x, mask = pad_batch([embed_tokens(one_layer, i) for i in ids])
    with torch.no_grad():
        fl = student(x, mask)[-1]
        qa = student(x, mask, scales)[-1]
    for i, t in enumerate(ids):
        golden = torch.from_numpy(qm.encode(t)).double() * qm.layers[-1].out_scale
        n = len(t)
        err_qat = (qa[i, :n].double() - golden).pow(2).mean()
        err_float = (fl[i, :n].double() - golden).pow(2).mean()
        assert err_qat < err_float          # the fake-quantized pass is closer to the integers


def test_e2e_distillation_prunes_and_learns(one_layer):
    student = Student.from_weights(one_layer)
    info = distill_e2e(student, "oneshot", 2, 4, 6, TEXTS, weights=one_layer, batch_size=3,
                       lr=1e-4, calib_every=3)
    assert info["steps"] == 6
    for lin in student.prunable_linears().values():
        assert is_nm_sparse(lin.weight, 2, 4)
    sw = student_weights(student, one_layer)
    assert is_nm_sparse(sw.layers[0].w1, 2, 4) and len(sw.layers) == 1
    idp = Student.from_weights(one_layer)
    info = distill_e2e(idp, "idp", 1, 4, 6, TEXTS, weights=one_layer, batch_size=3, qat=False)
    assert info["schedule"] == [3, 2, 1]
    assert all(is_nm_sparse(lin.weight, 1, 4) for lin in idp.prunable_linears().values())


def test_rank_kl_is_zero_only_when_the_order_matches():
    torch.manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    assert float(rank_kl(e, e, 0.02)) == pytest.approx(0.0, abs=1e-6)
    other = torch.nn.functional.normalize(e + 0.2 * torch.randn(6, 8), dim=1)
    assert float(rank_kl(other, e, 0.02)) > 0.01
    # a sharper temperature weighs the same disagreement more
    assert float(rank_kl(other, e, 0.01)) > float(rank_kl(other, e, 0.1))


def test_neighbour_batches(one_layer):
    ids = tokenize(TEXTS, get_default_tokenizer())
    teacher = Student.from_weights(one_layer).eval()
    near = teacher_neighbours(teacher, one_layer, ids, 2, chunk=4)
    assert near.shape == (len(TEXTS), 2)
    assert all(i not in near[i].tolist() for i in range(len(TEXTS)))
    with torch.no_grad():
        x, mask = pad_batch([embed_tokens(one_layer, i) for i in ids])
        h = teacher(x, mask)[-1]
    e = torch.nn.functional.normalize((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True),
                                      dim=1)
    sims = e @ e.T
    sims.fill_diagonal_(-2)
    assert near[:, 0].tolist() == sims.argmax(1).tolist()
    with pytest.raises(ValueError, match="k must be in 1..5, not 6"):
        teacher_neighbours(teacher, one_layer, ids, 6)
    student = Student.from_weights(one_layer)
    info = distill_e2e(student, "oneshot", 2, 4, 3, TEXTS, weights=one_layer, batch_size=3,
                       qat=False, batching="neighbours", rank_weight=0.1)
    assert info["steps"] == 3
    assert all(is_nm_sparse(lin.weight, 2, 4) for lin in student.prunable_linears().values())
    with pytest.raises(ValueError, match="batching must be one of length, neighbours, not 'x'"):
        distill_e2e(student, "oneshot", 2, 4, 3, TEXTS, weights=one_layer, batching="x")
    with pytest.raises(ValueError, match="rank_weight must be >= 0"):
        distill_e2e(student, "oneshot", 2, 4, 3, TEXTS, weights=one_layer, rank_tau=0)


def test_retrieval_agreement():
    torch.manual_seed(0)
    ref = torch.nn.functional.normalize(torch.randn(50, 16), dim=1)
    same = retrieval_agreement(ref, ref)
    assert same == {"top1": 1.0, "top10_overlap": 1.0}
    noisy = torch.nn.functional.normalize(ref + 0.3 * torch.randn(50, 16), dim=1)
    got = embedding_metrics(noisy, ref)
    assert 0 < got["top1"] < 1 and 0 < got["top10_overlap"] < 1
    assert got["cos_min"] <= got["cos_mean"] < 1


def test_minilm_study_small_resumes_and_renders(one_layer, tmp_path):
    from nmaccel.model.minilm_study import minilm_markdown, minilm_study
    texts = (TEXTS, TEXTS[:2] + ["A queue holds items in order.", "The value is cached.",
                                 "Tabs are expanded to spaces.", "Close the socket when done.",
                                 "The list is sorted in place.", "Time is measured in seconds.",
                                 "An event wakes every waiting thread.", "Paths use slashes.",
                                 "The parser reads one token.", "Keys must be hashable."])
    part = tmp_path / "s.json.partial"
    kw = dict(weights=one_layer, texts=texts, layer_texts=4, batch_size=3, int8=False,
              checkpoint=part)
    res = minilm_study([(2, 4)], ["idp", "oneshot"], 2, 2, 3, **kw)
    assert part.exists() and len(res["runs"]) == 4
    cell = res["summary"]["2:4"]["idp"]["float"]
    assert cell["cos_mean"][1] >= 0 and 0 < cell["cos_mean"][0] <= 1
    again = minilm_study([(2, 4)], ["idp", "oneshot"], 2, 2, 3, resume=True, **kw)
    assert again["runs"] == res["runs"]                 # nothing trained again
    with pytest.raises(ValueError, match="other settings"):
        minilm_study([(2, 4)], ["idp"], 2, 2, 3, resume=True, **kw)
    md = minilm_markdown(res, "nmaccel idp --study minilm", 60.0)
    assert "IDP" in md and "one-shot" in md and "## Verdict" in md
    assert "rank_weight" not in res["plan"] and "neighbour-order" not in md
    # another objective is another plan: named in the plan and the report, not resumed from
    obj = {"batching": "neighbours", "rank_weight": 0.1}
    other = minilm_study([(2, 4)], ["oneshot"], 1, 2, 3, objective=obj,
                         **{**kw, "checkpoint": tmp_path / "o.json.partial"})
    assert other["plan"]["batching"] == "neighbours" and other["plan"]["rank_weight"] == 0.1
    assert "listwise neighbour-order term, weight 0.1" in minilm_markdown(other, "c", 1.0)
    with pytest.raises(ValueError, match="unknown objective option tau"):
        minilm_study([(2, 4)], ["oneshot"], 1, 2, 3, objective={"tau": 1}, **kw)
