"""Names of the N:M pruning methods and their study labels, and the MiniLM distillation's
objective options (no PyTorch import, so the CLI can list them without loading it):
:func:`nmaccel.model.idp.prune_nm` implements the methods,
:func:`nmaccel.model.minilm_e2e.distill_e2e` the objective."""

from typing import Optional

__all__ = ["METHODS", "IDP_MASKS", "METHOD_SPECS", "METHOD_LABELS", "DEFAULT_PATTERNS",
           "WEIGHT_CHOICES", "BATCHINGS", "OBJECTIVE_DEFAULTS", "check_objective",
           "objective_changes"]

#: Methods accepted by :func:`nmaccel.model.idp.prune_nm`.
METHODS = ("idp", "oneshot", "srste")
#: Mask modes of IDP's phases.
IDP_MASKS = ("dynamic", "fixed")
#: The studies' method names: (method of ``prune_nm``, IDP mask mode), and their labels.
METHOD_SPECS = {"idp": ("idp", "dynamic"), "idp-fixed": ("idp", "fixed"),
                "oneshot": ("oneshot", "dynamic"), "srste": ("srste", "dynamic")}
METHOD_LABELS = {"idp": "IDP", "idp-fixed": "IDP (fixed masks)", "oneshot": "one-shot + FT",
                 "srste": "SR-STE"}
#: The N:M patterns the studies sweep by default.
DEFAULT_PATTERNS = "4:8,2:4,1:4,2:8,1:8"
#: Which MiniLM weights an N:M run uses (:func:`nmaccel.model.minilm_sparse.resolve_weights`):
#: ``auto`` the shipped distilled student where one ships for the pattern, else magnitude
#: pruning; ``shipped`` the student (an error where none ships); ``magnitude`` the packaged
#: dense weights magnitude-pruned to N:M (the baseline, no fine-tuning).
WEIGHT_CHOICES = ("auto", "shipped", "magnitude")

#: How :func:`~nmaccel.model.minilm_e2e.distill_e2e` groups sentences into batches.
BATCHINGS = ("length", "neighbours")
#: The end-to-end objective's options and their defaults (a plan or provenance names only
#: those that differ).
OBJECTIVE_DEFAULTS = {"batching": "length", "rank_weight": 0.0, "rank_tau": 0.02}


def check_objective(objective: Optional[dict]) -> dict:
    """``objective`` with its defaults filled in; unknown keys or bad values raise."""
    got = dict(objective or {})
    unknown = sorted(set(got) - set(OBJECTIVE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown objective option {', '.join(unknown)} (options: "
                         f"{', '.join(OBJECTIVE_DEFAULTS)})")
    out = {**OBJECTIVE_DEFAULTS, **got}
    if out["batching"] not in BATCHINGS:
        raise ValueError(f"batching must be one of {', '.join(BATCHINGS)}, not "
                         f"{out['batching']!r}")
    if out["rank_weight"] < 0 or not out["rank_tau"] > 0:
        raise ValueError(f"rank_weight must be >= 0 and rank_tau > 0, not "
                         f"{out['rank_weight']} and {out['rank_tau']}")
    return out


def objective_changes(objective: Optional[dict]) -> dict:
    """The options of ``objective`` that differ from :data:`OBJECTIVE_DEFAULTS`."""
    return {k: v for k, v in check_objective(objective).items() if OBJECTIVE_DEFAULTS[k] != v}
