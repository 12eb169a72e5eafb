"""Golden models and algorithms (PyTorch/NumPy only; never imports Amaranth)."""
