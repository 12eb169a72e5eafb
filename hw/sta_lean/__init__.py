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

Still to build (in this package): the single-PE GEMM datapath (``lanes`` LUT products behind
the N:M activation mux), the sequencer that walks a command's tiles one output at a time
through the shared unit, SPRAM-backed single-port buffers (``hw/common/spram.py``) with
commands and weight words read as 16-bit slices, and the host port shared with the conv
engine's (``boards/uart_top.py``).
"""
