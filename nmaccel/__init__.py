"""nmaccel: an open hardware kit for N:M sparse Transformer and adder/binary conv accelerators.

One import name over the repository's folders, in layers that import only downward (README,
"Architecture"): ``nmaccel.spec`` (parameters, formats, latencies), ``nmaccel.hw`` (Amaranth
components) and ``nmaccel.model`` (golden models, compilers, cycle models), ``nmaccel.sim``
(simulation harness), ``nmaccel.boards`` (FPGA flows, host driver), ``nmaccel.studies``
(demo, report, benchmarks) and ``nmaccel.cli`` (the ``nmaccel`` command).
"""

__version__ = "0.1.0"
