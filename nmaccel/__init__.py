"""nmaccel: an open hardware kit for N:M sparse Transformer and adder/binary conv accelerators.

Subpackages map onto the repository's top-level folders: ``nmaccel.hw`` (Amaranth
components, ``hw/config.py``), ``nmaccel.model`` (golden models and algorithms),
``nmaccel.sim`` (simulation harness, CLI) and ``nmaccel.boards`` (FPGA flows).
"""

__version__ = "0.1.0"
