"""The memory-lean STA for small FPGAs (the iCE40UP5K): one time-shared datapath per job.

:class:`~nmaccel.hw.sta.core.StaCore` gives every job its own pipelined hardware (a MAC array,
per-column requant units, LayerNorm, GELU and residual lanes, a streaming softmax); its
smallest preset needs 5.7x the UP5K's logic cells. The lean STA runs the same programs
(:mod:`nmaccel.spec.sta_isa`, compiled for a one-PE :class:`~nmaccel.spec.config.StaConfig`
such as the ``icebreaker`` preset) with one unit per job:

- :class:`~nmaccel.hw.sta_lean.vector.SharedVectorUnit`: every vector operation (requant of
  each GEMM output, GELU, residual add, LayerNorm rows, softmax rows) on one 16 × 16-bit
  multiplier, one 64-bit adder, a shift walk and a one-bit-a-cycle divider/square root; exact
  cycles in :mod:`nmaccel.spec.lean_vector`. Alone on the UP5K (``nmaccel bench block-fmax
  --board icebreaker``): about 2,800 logic cells, 1 SB_MAC16, 6 EBR, 25 MHz.

- :class:`~nmaccel.hw.sta_lean.core.LeanCore`: the sequencer that walks every command one
  output at a time through the one-PE GEMM datapath and the shared unit, the buffers, and the
  StaCore's host port (so the same driver, UART bridge and programs work); exact cycles in
  :mod:`nmaccel.spec.lean_timing`. A config selects it with ``lean = 1``
  (:func:`sta_core`).

Still to do: the buffers in the UP5K's single-port SPRAMs (``hw/common/spram.py``) with
commands and weight words read as 16-bit slices, and LUT products for the PE.
"""


def sta_core(config):
    """The STA core that implements ``config``: :class:`~nmaccel.hw.sta_lean.core.LeanCore`
    for ``config.lean``, :class:`~nmaccel.hw.sta.core.StaCore` otherwise (the same host port
    and programs)."""
    if config.lean:
        from nmaccel.hw.sta_lean.core import LeanCore
        return LeanCore(config)
    from nmaccel.hw.sta.core import StaCore
    return StaCore(config)
