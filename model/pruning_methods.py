"""Names of the N:M pruning methods and their study labels (no PyTorch import, so the CLI
can list them without loading it): :func:`nmaccel.model.idp.prune_nm` implements them."""

__all__ = ["METHODS", "IDP_MASKS", "METHOD_SPECS", "METHOD_LABELS", "DEFAULT_PATTERNS",
           "WEIGHT_CHOICES"]

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
