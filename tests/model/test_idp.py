"""IDP / one-shot / SR-STE under one API: schedules, budgets, sparsity, inheritance, seeds,
errors."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from nmaccel.model.idp import (
    check_schedule,
    idp_schedule,
    is_nm_sparse,
    prunable_linears,
    prune_nm,
    split_budget,
)
from nmaccel.model.nm import nm_mask

torch.set_num_threads(1)


def _task(seed=0):
    """A small regression task: a dense MLP fitted to a random teacher, and its data."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 16, generator=g)
    teacher = torch.randn(16, 16, generator=g)
    y = torch.tanh(x @ teacher) @ torch.randn(16, 8, generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 8))

    def sample(gen):
        idx = torch.randint(512, (32,), generator=gen)
        return x[idx], y[idx]

    def loss_fn(mdl, batch):
        return nn.functional.mse_loss(mdl(batch[0]), batch[1])

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = loss_fn(model, (x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, loss_fn, sample, (x, y)


@pytest.fixture(scope="module")
def task():
    return _task()


def _weights(model):
    return [p.detach().clone() for p in model.state_dict().values()]


def test_default_schedules():
    assert idp_schedule(2, 4) == [3, 2]
    assert idp_schedule(1, 8) == [7, 6, 5, 4, 3, 2, 1]
    assert idp_schedule(4, 8) == [7, 6, 5, 4]
    assert idp_schedule(3, 4) == [3]
    assert idp_schedule(1, 8, start=4) == [4, 3, 2, 1]
    assert check_schedule((6, 2), 2, 8) == [6, 2]


@pytest.mark.parametrize("schedule, message", [
    ([2, 3, 2], r"schedule must strictly decrease .* schedule\[1\] = 3 follows 2"),
    ([3, 3, 2], r"schedule must strictly decrease .* schedule\[1\] = 3 follows 3"),
    ([4, 3, 2], r"schedule\[0\] = 4: every N must satisfy 1 <= N < m=4"),
    ([5, 2], r"schedule\[0\] = 5: every N must satisfy 1 <= N < m=4"),
    ([3, 0], r"schedule\[1\] = 0: every N must satisfy 1 <= N < m=4"),
    ([3], r"schedule must end at the target n=2, not 3"),
    ([], r"at least one N value"),
    ("3,2", r"schedule must be a sequence of N values"),
])
def test_bad_schedules_are_rejected(schedule, message, task):
    with pytest.raises(ValueError, match=message):
        check_schedule(schedule, 2, 4)
    model, loss_fn, sample, _ = task
    with pytest.raises(ValueError, match=message):
        prune_nm(copy.deepcopy(model), "idp", 2, 4, 10, loss_fn, sample, schedule=schedule)


@pytest.mark.parametrize("kwargs, message", [
    (dict(budget=0), r"budget must be a positive integer \(optimizer steps\), not 0"),
    (dict(budget=-5), r"budget must be a positive integer \(optimizer steps\), not -5"),
    (dict(budget=2.5), r"budget must be a positive integer \(optimizer steps\), not 2.5"),
    (dict(n=4, m=4), r"n must satisfy 1 <= n < m \(m=4\), not 4"),
    (dict(n=5, m=4), r"n must satisfy 1 <= n < m \(m=4\), not 5"),
    (dict(n=1, m=6), r"m must be a power of two in \[2, 16\], not 6"),
    (dict(method="magic"), r"method must be one of idp, oneshot, srste, not 'magic'"),
    (dict(method="oneshot", schedule=[3, 2]), r"schedule and phase_steps apply to method 'idp'"),
    (dict(n=1, m=8, budget=5),
     r"budget \(5 steps\) must be at least the number of IDP phases \(7\)"),
    (dict(phase_steps=[5, 4]), r"phase_steps must sum to the budget \(10\), not 9"),
    (dict(phase_steps=[10, 0]), r"phase_steps\[1\] must be a positive integer"),
    (dict(phase_steps=[10]), r"one step count per schedule entry \(2\), not 1"),
    (dict(seed=-1), r"seed must be a non-negative integer, not -1"),
    (dict(idp_mask="sometimes"), r"idp_mask must be one of dynamic, fixed"),
])
def test_bad_arguments_are_rejected(kwargs, message, task):
    model, loss_fn, sample, _ = task
    args = dict(method="idp", n=2, m=4, budget=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        prune_nm(copy.deepcopy(model), args.pop("method"), args.pop("n"), args.pop("m"),
                 args.pop("budget"), loss_fn, sample, **args)


def test_layer_whose_width_does_not_fit_m_is_rejected(task):
    model, loss_fn, sample, _ = task
    odd = nn.Sequential(nn.Linear(12, 8))
    with pytest.raises(ValueError, match=r"layer '0' has in_features=12, not divisible by m=8"):
        prune_nm(odd, "oneshot", 2, 8, 3, loss_fn, sample, layers={"0": odd[0]})
    assert set(prunable_linears(model, 8)) == {"0", "2"}     # 16 and 32 inputs
    with pytest.raises(ValueError, match="no prunable"):
        prunable_linears(nn.Sequential(nn.Linear(12, 8)), 8)


def test_split_budget():
    assert split_budget(10, 3) == [3, 3, 4]
    assert split_budget(1000, 7) == [142, 143, 143, 143, 143, 143, 143]
    assert split_budget(7, 7) == [1] * 7
    steps = split_budget(100, 3, shares=[1, 1, 2])
    assert sum(steps) == 100 and steps[2] > steps[0] and min(steps) >= 1
    with pytest.raises(ValueError, match="budget must be a positive integer"):
        split_budget(0, 2)


@pytest.mark.parametrize("method", ["idp", "oneshot", "srste"])
@pytest.mark.parametrize("n, m", [(2, 4), (1, 8)])
def test_every_method_spends_the_budget_and_ends_nm_sparse(method, n, m, task):
    model, loss_fn, sample, _ = task
    pruned = copy.deepcopy(model)
    res = prune_nm(pruned, method, n, m, 21, loss_fn, sample, seed=1)
    assert res.steps == 21 == sum(res.phase_steps) == sum(p["steps"] for p in res.phases)
    assert res.schedule == (idp_schedule(n, m) if method == "idp" else [n])
    for name, layer in prunable_linears(pruned, m).items():
        assert not parametrize.is_parametrized(layer)
        assert is_nm_sparse(layer.weight, n, m), name
        assert torch.equal(res.masks[name], layer.weight != 0)
    # the untouched copy is still dense
    assert not is_nm_sparse(model[0].weight, n, m)


def test_fine_tuning_recovers_loss_lost_to_pruning(task):
    model, loss_fn, sample, (x, y) = task
    hard = copy.deepcopy(model)
    with torch.no_grad():
        dense_loss = float(loss_fn(model, (x, y)))
        for layer in prunable_linears(hard, 4).values():
            layer.weight.mul_(nm_mask(layer.weight, 2, 4))
        hard_loss = float(loss_fn(hard, (x, y)))
    assert hard_loss > 2 * dense_loss
    for method in ("idp", "oneshot", "srste"):
        tuned = copy.deepcopy(model)
        prune_nm(tuned, method, 2, 4, 150, loss_fn, sample, lr=1e-2, seed=0)
        with torch.no_grad():
            assert float(loss_fn(tuned, (x, y))) < 0.65 * hard_loss, method


@pytest.mark.parametrize("method", ["idp", "oneshot", "srste"])
def test_same_seed_same_weights(method, task):
    model, loss_fn, sample, _ = task
    runs = []
    for seed in (3, 3, 4):
        pruned = copy.deepcopy(model)
        prune_nm(pruned, method, 2, 4, 12, loss_fn, sample, seed=seed)
        runs.append(_weights(pruned))
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], runs[2]))


def test_oneshot_keeps_the_dense_magnitude_mask(task):
    model, loss_fn, sample, _ = task
    pruned = copy.deepcopy(model)
    res = prune_nm(pruned, "oneshot", 2, 8, 15, loss_fn, sample)
    for name, layer in prunable_linears(model, 8).items():
        want = nm_mask(layer.weight, 2, 8)
        assert torch.equal(res.masks[name] | ~want, torch.ones_like(want))   # kept ⊆ dense top-2


def test_idp_phases_inherit_sparsity_and_report_candidates(task):
    model, loss_fn, sample, _ = task
    seen = []

    def on_phase(n_k, mdl):
        seen.append((n_k, {k: (l.weight != 0).clone()
                           for k, l in prunable_linears(mdl, 8).items()}))
        return {"nonzero": sum(int((l.weight != 0).sum())
                               for l in prunable_linears(mdl, 8).values())}

    pruned = copy.deepcopy(model)
    res = prune_nm(pruned, "idp", 2, 8, 30, loss_fn, sample, schedule=[6, 4, 2],
                   phase_steps=[5, 10, 15], idp_mask="fixed", on_phase=on_phase)
    assert [p["n"] for p in res.phases] == [6, 4, 2] and res.phase_steps == [5, 10, 15]
    # each phase's candidate is N_k:8, and its kept set is inside the previous phase's
    for (n_k, masks) in seen:
        assert all(is_nm_sparse(mk.float(), n_k, 8) for mk in masks.values())
    for (_, prev), (_, cur) in zip(seen, seen[1:]):
        for k in cur:
            assert not (cur[k] & ~prev[k]).any()
    nz = [p["nonzero"] for p in res.phases]
    assert nz[0] > nz[1] > nz[2]


def test_dynamic_idp_can_regrow_pruned_weights(task):
    """Dynamic phases recompute masks: a weight pruned by phase 1 may be kept by phase 2."""
    model, loss_fn, sample, _ = task
    seen = []
    pruned = copy.deepcopy(model)
    prune_nm(pruned, "idp", 2, 8, 200, loss_fn, sample, schedule=[4, 2], lr=3e-2,
             on_phase=lambda n_k, mdl: seen.append((mdl[0].weight != 0).clone()))
    assert (seen[1] & ~seen[0]).any()


# -- the `nmaccel idp` command -----------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--budget", "0"], "--budget must be a positive integer (optimizer steps), not 0"),
    (["--minilm-budget", "-1"],
     "--minilm-budget must be a positive integer (optimizer steps), not -1"),
    (["--patterns", "4:4"], "n must satisfy 1 <= n < m (m=4), not 4"),
    (["--patterns", "dense"], "patterns must be N:M patterns"),
    (["--methods", "idp,magic"], "unknown method 'magic'"),
    (["--seeds", "0"], "expected a positive integer, not 0"),
    (["--lr", "0"], "--lr must be a positive number, not 0.0"),
    (["--patterns", "1:8", "--int-pattern", "2:4"], "--int-pattern 2:4 must be one of --patterns"),
    (["--idp-final-share", "1.5"], "idp_final_share must be a fraction in (0, 1), not 1.5"),
])
def test_cli_bad_arguments_give_one_line_errors(argv, message, capsys, tmp_path):
    from nmaccel.cli import main
    code = None
    try:
        code = main(["idp", "--no-progress", "--dense-steps", "1", "--json",
                     str(tmp_path / "x.json"), "--md", str(tmp_path / "x.md"), "--png",
                     str(tmp_path / "x.png")] + argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err


def test_cli_digits_study_end_to_end(tmp_path, capsys):
    import json

    from nmaccel.cli import main
    paths = {ext: tmp_path / f"d.{ext}" for ext in ("json", "md", "png")}
    assert main(["idp", "--no-progress", "--patterns", "2:4,1:8", "--seeds", "2", "--budget", "8",
                 "--dense-steps", "40", "--json", str(paths["json"]), "--md", str(paths["md"]),
                 "--png", str(paths["png"])]) == 0
    res = json.loads(paths["json"].read_text())
    assert res["patterns"] == ["2:4", "1:8"] and res["seeds"] == 2
    for key in ("2:4", "1:8"):
        cells = res["summary"][key]
        for meth in ("magnitude", "idp", "oneshot", "srste"):
            assert len(cells[meth]["accs"]) == 2 and 0 <= cells[meth]["acc_mean"] <= 1
        assert cells["idp"]["schedule"] == ([3, 2] if key == "2:4" else [7, 6, 5, 4, 3, 2, 1])
    # equal budgets: every fine-tuned run took exactly --budget optimizer steps
    assert {r["steps"] for r in res["runs"] if r["method"] != "magnitude"} == {8}
    assert len(res["integer"]) == 2 and all(r["images"] == 360 for r in res["integer"])
    md = paths["md"].read_text()
    assert "nmaccel idp --study digits" in md and "| 2:4 | 50.0% |" in md
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert "IDP − best other" in capsys.readouterr().out
    # the report can be re-rendered from the JSON alone, identically
    md2, png2 = tmp_path / "r.md", tmp_path / "r.png"
    assert main(["idp", "--render", str(paths["json"]), "--md", str(md2), "--png", str(png2)]) == 0
    assert md2.read_text() == md and png2.exists()
    assert main(["idp", "--render", str(tmp_path / "missing.json")]) == 2
    # against itself as a baseline: paired differences IDP − IDP are exactly zero
    assert main(["idp", "--render", str(paths["json"]), "--baseline", str(paths["json"]),
                 "--md", str(md2), "--png", str(png2)]) == 0
    section = md2.read_text().split("## Against the baseline run")[1]
    assert "dense models are identical" in section
    assert "| 2:4 | +0.00 ± 0.00 [+0.00, +0.00] |" in section


def test_cli_idp_final_share_moves_steps_to_the_target_phase():
    from nmaccel.studies.idp import idp_phase_steps
    steps = idp_phase_steps(1000, (1, 8), 0.5)
    assert len(steps) == 7 and sum(steps) == 1000 and steps[-1] >= 490 and max(steps[:-1]) <= 90
    assert idp_phase_steps(1000, (2, 4), 0.75) == [250, 750]
    assert idp_phase_steps(1000, (3, 4), 0.5) is None and idp_phase_steps(10, (1, 8), None) is None


def test_digits_study_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """An interrupted study keeps its finished seeds; --resume trains only the rest and gives
    what an uninterrupted run gives (the study is seeded); another plan's checkpoint is
    refused."""
    import nmaccel.model.digits_transformer as dt
    from nmaccel.studies import idp as study
    kw = dict(patterns=[(2, 4)], methods=["oneshot"], seeds=2, budget=4, dense_steps=20,
              int_pattern=None, progress=False)
    whole = study.digits_study(**kw)
    ckpt = tmp_path / "d.json.partial"
    original, seeds = dt.train_dense, []

    def interrupted_at_seed_1(*a, **k):
        seeds.append(k["seed"])
        if k["seed"] == 1:
            raise KeyboardInterrupt
        return original(*a, **k)
    monkeypatch.setattr(dt, "train_dense", interrupted_at_seed_1)
    with pytest.raises(KeyboardInterrupt):
        study.digits_study(**kw, checkpoint=ckpt)
    assert ckpt.exists() and seeds == [0, 1]
    seeds.clear()
    monkeypatch.setattr(dt, "train_dense", lambda *a, **k: seeds.append(k["seed"])
                        or original(*a, **k))
    resumed = study.digits_study(**kw, checkpoint=ckpt, resume=True)
    assert seeds == [1]                                  # seed 0 came from the checkpoint

    def untimed(res):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in res["runs"]]
    assert untimed(resumed) == untimed(whole)
    assert [c["acc_mean"] for c in resumed["summary"]["2:4"].values()] == \
        [c["acc_mean"] for c in whole["summary"]["2:4"].values()]
    with pytest.raises(ValueError, match="of another study plan"):
        study.digits_study(**dict(kw, budget=8), checkpoint=ckpt, resume=True)
