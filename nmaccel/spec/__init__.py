"""The spec layer: every parameter, format, field layout and latency that more than one layer
reads, defined once. It imports nothing else of nmaccel, and neither Amaranth nor PyTorch.

``config`` (StaConfig, ConvConfig, presets, arithmetic latencies), ``sta_isa`` (STA commands,
host memory map, CSR fields), ``sta_timing`` (controller and pipeline latencies),
``vector_timing`` and ``softmax_timing`` (unit timing), ``softmax_format`` (the exponent
table), ``conv_format`` (conv-engine modes and field layouts), ``uart_protocol`` (the board
link's frames).
"""
