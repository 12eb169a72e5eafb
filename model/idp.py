"""N:M pruning of a trained model under one API: IDP, one-shot magnitude, SR-STE.

:func:`prune_nm` takes a trained (dense) ``torch.nn.Module`` and walks its prunable linear
layers to an ``n``:``m`` pattern with one of three methods, spending exactly ``budget``
optimizer steps on fine-tuning whatever the method, so that methods can be compared at equal
training cost:

``"idp"`` — inherited dynamic pruning (STA, Fang, Zhou & Wang, IEEE TVLSI 2022,
    arXiv:2208.06118). The pattern is walked down a *schedule* of N values, by default
    ``m-1, m-2, ..., n`` (e.g. 2:4 is reached through 3:4; 1:8 through 7:8, 6:8, ..., 2:8).
    Each step is a fine-tuning *phase* at ``N_k:m``; the phase's winner (its final weights,
    hard-pruned to ``N_k:m``) seeds the next phase, so every phase inherits the sparsity of
    the previous one. Within a phase the mask is *dynamic* by default: it is recomputed from the
    current magnitudes at every forward pass, gradients reach all weights by a straight-through
    estimator with the SR-STE refinement term (pruned weights can come back). With
    ``idp_mask="fixed"`` each phase instead freezes the magnitude mask of its seed (gradual
    magnitude pruning with inheritance). The budget is split over the phases
    (:func:`split_budget`, equal shares by default, or ``phase_steps``), so IDP's total equals
    the other methods' budget. Every phase's result is an N_k:m candidate model (reported via
    ``on_phase``), the paper's "series of N:M sparse candidates".
``"oneshot"`` — one magnitude mask at the target ``n:m`` from the dense weights, frozen, then
    ``budget`` steps of masked fine-tuning.
``"srste"`` — SR-STE (Zhou et al., ICLR 2021, arXiv:2102.04010) at the target ``n:m`` for
    ``budget`` steps, starting from the same dense weights (fine-tuning, not training from
    scratch: all three methods start from the same trained model).

Budget accounting
    ``budget`` counts optimizer steps; every step draws one mini-batch from ``sample_batch``
    and does one forward, one backward and one AdamW update of *all* parameters of the model.
    Each phase (IDP: one per schedule entry; others: one) gets a fresh AdamW and its own
    cosine learning-rate decay from ``lr`` to 0 over the phase's steps (``lr_schedule="cosine"``,
    or ``"constant"``).

Reproducibility
    ``seed`` seeds torch's global generator (dropout, if any) and a private generator handed
    to ``sample_batch``; two calls with the same seed, model and data give identical weights
    (single-threaded CPU).

After :func:`prune_nm` the pruned layers hold plain ``weight`` tensors that are exactly N:M
sparse (the parametrizations used during fine-tuning are removed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn
from torch.nn.utils import parametrize

from nmaccel.model.nm import SR_STE_LAMBDA, SrSteSparsify, _is_int, check_nm, nm_mask
from nmaccel.model.pruning_methods import IDP_MASKS, METHOD_LABELS, METHOD_SPECS, METHODS

__all__ = ["METHODS", "IDP_MASKS", "LR_SCHEDULES", "check_budget", "idp_schedule",
           "check_schedule", "split_budget", "prunable_linears", "is_nm_sparse", "train_steps",
           "PruneResult", "prune_nm", "METHOD_SPECS", "METHOD_LABELS"]

#: Learning-rate schedules of a phase.
LR_SCHEDULES = ("cosine", "constant")

LossFn = Callable[[nn.Module, Any], torch.Tensor]
BatchFn = Callable[[torch.Generator], Any]


# -- validation --------------------------------------------------------------------------------


def check_budget(budget: Any, name: str = "budget") -> int:
    """``budget`` as a positive int (optimizer steps); ``ValueError`` naming ``name`` otherwise."""
    if not _is_int(budget) or budget < 1:
        raise ValueError(f"{name} must be a positive integer (optimizer steps), not {budget!r}")
    return int(budget)


def idp_schedule(n: int, m: int, start: Optional[int] = None) -> list[int]:
    """The default IDP schedule of N values: ``start, start-1, ..., n`` (``start`` = ``m-1``).

    ``idp_schedule(2, 4) == [3, 2]``; ``idp_schedule(1, 8) == [7, 6, 5, 4, 3, 2, 1]``.
    """
    n, m = check_nm(n, m)
    start = m - 1 if start is None else start
    check_nm(start, m)
    if start < n:
        raise ValueError(f"start must be >= n={n} (IDP walks N down to n), not {start!r}")
    return list(range(start, n - 1, -1))


def check_schedule(schedule: Any, n: int, m: int) -> list[int]:
    """Validate an IDP schedule for target ``n:m``; return it as a list of ints.

    Every entry must be an integer ``N`` with ``1 <= N < m``, entries must strictly decrease,
    and the last must equal the target ``n``.
    """
    n, m = check_nm(n, m)
    if isinstance(schedule, (str, bytes)) or not isinstance(schedule, Iterable):
        raise ValueError(f"schedule must be a sequence of N values, not {schedule!r}")
    sched = list(schedule)
    if not sched:
        raise ValueError("schedule must hold at least one N value (the target n)")
    for i, v in enumerate(sched):
        if not _is_int(v) or not 1 <= v < m:
            raise ValueError(f"schedule[{i}] = {v!r}: every N must satisfy 1 <= N < m={m} "
                             f"(N:M with N >= M is not sparse)")
    for i in range(1, len(sched)):
        if sched[i] >= sched[i - 1]:
            raise ValueError(f"schedule must strictly decrease (N steps down towards the "
                             f"target), but schedule[{i}] = {sched[i]} follows {sched[i - 1]}: "
                             f"{sched}")
    if sched[-1] != n:
        raise ValueError(f"schedule must end at the target n={n}, not {sched[-1]}: {sched}")
    return [int(v) for v in sched]


def split_budget(budget: int, parts: int, shares: Optional[Sequence[float]] = None) -> list[int]:
    """Split ``budget`` optimizer steps over ``parts`` phases; the result sums to ``budget``.

    Equal shares by default (the remainder goes to the *last* phases, nearest the target);
    ``shares`` gives relative weights. Every phase gets at least one step, so ``budget`` must be
    at least ``parts``.
    """
    budget = check_budget(budget)
    if not _is_int(parts) or parts < 1:
        raise ValueError(f"parts must be a positive integer, not {parts!r}")
    if budget < parts:
        raise ValueError(f"budget ({budget} steps) must be at least the number of IDP phases "
                         f"({parts}), one step each")
    if shares is None:
        base, rem = divmod(budget, parts)
        return [base + (1 if i >= parts - rem else 0) for i in range(parts)]
    shares = [float(s) for s in shares]
    if len(shares) != parts or any(not s > 0 or not math.isfinite(s) for s in shares):
        raise ValueError(f"shares must be {parts} positive numbers, not {shares}")
    spare = budget - parts
    raw = [spare * s / sum(shares) for s in shares]
    steps = [1 + int(math.floor(r)) for r in raw]
    order = sorted(range(parts), key=lambda i: (raw[i] - math.floor(raw[i]), i), reverse=True)
    for i in order[: budget - sum(steps)]:
        steps[i] += 1
    return steps


def _check_phase_steps(phase_steps: Any, budget: int, parts: int) -> list[int]:
    if isinstance(phase_steps, (str, bytes)) or not isinstance(phase_steps, Iterable):
        raise ValueError(f"phase_steps must be a sequence of step counts, not {phase_steps!r}")
    steps = list(phase_steps)
    if len(steps) != parts:
        raise ValueError(f"phase_steps must give one step count per schedule entry ({parts}), "
                         f"not {len(steps)}")
    for i, s in enumerate(steps):
        check_budget(s, f"phase_steps[{i}]")
    if sum(steps) != budget:
        raise ValueError(f"phase_steps must sum to the budget ({budget}), not {sum(steps)}")
    return [int(s) for s in steps]


# -- layers and masks --------------------------------------------------------------------------


def prunable_linears(model: nn.Module, m: Optional[int] = None) -> dict[str, nn.Linear]:
    """The layers :func:`prune_nm` prunes: ``model.prunable_linears()`` if the model defines it,
    else every ``nn.Linear`` (with ``in_features`` divisible by ``m`` when ``m`` is given)."""
    if hasattr(model, "prunable_linears"):
        layers = dict(model.prunable_linears())
    else:
        layers = {name: mod for name, mod in model.named_modules() if isinstance(mod, nn.Linear)
                  and (m is None or mod.in_features % m == 0)}
    if not layers:
        raise ValueError("the model has no prunable nn.Linear layers")
    for name, mod in layers.items():
        if not isinstance(mod, nn.Linear):
            raise ValueError(f"prunable layer {name!r} must be an nn.Linear, not "
                             f"{type(mod).__name__}")
        if m is not None and mod.in_features % m:
            raise ValueError(f"layer {name!r} has in_features={mod.in_features}, not divisible "
                             f"by m={m}")
    return layers


def is_nm_sparse(weight: torch.Tensor, n: int, m: int) -> bool:
    """True iff every group of ``m`` input channels of every row has at most ``n`` nonzeros."""
    n, m = check_nm(n, m)
    w = weight.detach()
    return bool(((w != 0).reshape(*w.shape[:-1], w.shape[-1] // m, m).sum(-1) <= n).all())


class _FixedMask(nn.Module):
    """Parametrization ``w -> w * mask`` with a frozen mask."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.float32))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


class _DynamicNM(nn.Module):
    """Parametrization ``w -> w * nm_mask(w)`` recomputed every call, SR-STE backward."""

    def __init__(self, n: int, m: int, lam: float):
        super().__init__()
        self.n, self.m, self.lam = n, m, lam

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return SrSteSparsify.apply(w, self.n, self.m, self.lam)


def _attach(layers: Mapping[str, nn.Linear], make: Callable[[nn.Linear], nn.Module]) -> None:
    for layer in layers.values():
        parametrize.register_parametrization(layer, "weight", make(layer))


def _bake(layers: Mapping[str, nn.Linear], n: int, m: int) -> None:
    """Remove the parametrizations, leaving weights hard-pruned to ``n:m`` by magnitude."""
    for layer in layers.values():
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        with torch.no_grad():
            layer.weight.mul_(nm_mask(layer.weight, n, m).to(layer.weight.dtype))


# -- fine-tuning -------------------------------------------------------------------------------


def train_steps(model: nn.Module, steps: int, loss_fn: LossFn, sample_batch: BatchFn,
                generator: torch.Generator, lr: float = 1e-3, weight_decay: float = 0.0,
                lr_schedule: str = "cosine",
                on_step: Optional[Callable[[float], None]] = None) -> list[float]:
    """``steps`` AdamW steps over all parameters of ``model``; returns the loss of every step.

    ``loss_fn(model, batch)`` returns a scalar loss; ``sample_batch(generator)`` draws a batch.
    The learning rate decays from ``lr`` to 0 by a cosine over the steps (or stays constant).
    """
    steps = check_budget(steps, "steps")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ValueError(f"lr must be a positive number, not {lr!r}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                         f"not {lr_schedule!r}")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    for t in range(steps):
        scale = 0.5 * (1.0 + math.cos(math.pi * t / steps)) if lr_schedule == "cosine" else 1.0
        for group in opt.param_groups:
            group["lr"] = lr * scale
        loss = loss_fn(model, sample_batch(generator))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(losses[-1])
    model.eval()
    return losses


@dataclass
class PruneResult:
    """What :func:`prune_nm` did: per-phase step counts and losses, final masks, wall time."""

    method: str
    n: int
    m: int
    budget: int
    schedule: list[int]
    phase_steps: list[int]
    seconds: float
    losses: list[float] = field(repr=False)
    masks: dict[str, torch.Tensor] = field(repr=False)
    phases: list[dict] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Optimizer steps actually taken (always equals ``budget``)."""
        return len(self.losses)


def prune_nm(model: nn.Module, method: str, n: int, m: int, budget: int, loss_fn: LossFn,
             sample_batch: BatchFn, *, schedule: Optional[Sequence[int]] = None,
             phase_steps: Optional[Sequence[int]] = None, seed: int = 0, lr: float = 1e-3,
             weight_decay: float = 0.0, lr_schedule: str = "cosine", lam: float = SR_STE_LAMBDA,
             idp_mask: str = "dynamic", layers: Optional[Mapping[str, nn.Linear]] = None,
             on_phase: Optional[Callable[[int, nn.Module], Optional[dict]]] = None,
             progress: Optional[Callable[[], None]] = None) -> PruneResult:
    """Prune ``model`` in place to ``n:m`` with ``method`` and ``budget`` fine-tuning steps.

    Parameters
    ----------
    model : a trained model; its prunable layers are ``layers`` or :func:`prunable_linears`.
    method : ``"idp"``, ``"oneshot"`` or ``"srste"`` (see the module docstring).
    n, m : the target pattern (``m`` a power of two in [2, 16], ``1 <= n < m``).
    budget : total optimizer steps, the same for every method (IDP splits it over its phases).
    loss_fn, sample_batch : ``loss_fn(model, batch)`` → scalar; ``sample_batch(gen)`` → batch.
    schedule : IDP only — the N values to walk through, strictly decreasing, ending at ``n``
        (default :func:`idp_schedule`: ``m-1, ..., n``).
    phase_steps : IDP only — steps per phase (must sum to ``budget``); default equal split.
    seed : seeds batch sampling and torch's global RNG.
    lr, weight_decay, lr_schedule : AdamW settings of every phase.
    lam : the SR-STE refinement weight (``srste`` and dynamic IDP phases).
    idp_mask : ``"dynamic"`` (recomputed every step, SR-STE backward) or ``"fixed"``.
    on_phase : called after each phase as ``on_phase(N_k, model)`` with the model hard-pruned
        to ``N_k:m``; a returned dict is stored in ``PruneResult.phases``.
    progress : called once per optimizer step.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    n, m = check_nm(n, m)
    budget = check_budget(budget)
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    if idp_mask not in IDP_MASKS:
        raise ValueError(f"idp_mask must be one of {', '.join(IDP_MASKS)}, not {idp_mask!r}")
    if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not lam >= 0:
        raise ValueError(f"lam must be a non-negative number, not {lam!r}")
    if method == "idp":
        sched = check_schedule(idp_schedule(n, m) if schedule is None else schedule, n, m)
        if phase_steps is None:
            steps = split_budget(budget, len(sched))
        else:
            steps = _check_phase_steps(phase_steps, budget, len(sched))
    else:
        if schedule is not None or phase_steps is not None:
            raise ValueError(f"schedule and phase_steps apply to method 'idp' only, not {method!r}")
        sched, steps = [n], [budget]
    layers = dict(layers) if layers is not None else prunable_linears(model, m)
    for name, layer in layers.items():
        if layer.in_features % m:
            raise ValueError(f"layer {name!r} has in_features={layer.in_features}, not "
                             f"divisible by m={m}")
        if parametrize.is_parametrized(layer, "weight"):
            raise ValueError(f"layer {name!r} is already parametrized; prune an unwrapped model")

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    phases: list[dict] = []
    start = time.perf_counter()

    def on_step(loss: float) -> None:
        losses.append(loss)
        if progress is not None:
            progress()

    for n_k, steps_k in zip(sched, steps, strict=True):
        if method == "oneshot" or (method == "idp" and idp_mask == "fixed"):
            _attach(layers, lambda layer, n_k=n_k: _FixedMask(nm_mask(layer.weight, n_k, m)))
        else:
            _attach(layers, lambda layer, n_k=n_k: _DynamicNM(n_k, m, float(lam)))
        try:
            before = len(losses)
            train_steps(model, steps_k, loss_fn, sample_batch, gen, lr, weight_decay,
                        lr_schedule, on_step)
        finally:
            _bake(layers, n_k, m)
        info = {"n": n_k, "steps": steps_k,
                "final_loss": sum(losses[-min(10, steps_k):]) / min(10, steps_k),
                "first_step": before}
        if on_phase is not None:
            extra = on_phase(n_k, model)
            if extra:
                info.update(extra)
        phases.append(info)
    masks = {name: (layer.weight.detach() != 0) for name, layer in layers.items()}
    return PruneResult(method=method, n=n, m=m, budget=budget, schedule=sched, phase_steps=steps,
                       seconds=time.perf_counter() - start, losses=losses, masks=masks,
                       phases=phases)
