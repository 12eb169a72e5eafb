"""nmaccel.hw.conv: the adder / binary convolution engine.

* :mod:`.line_buffer` -- :class:`LineBuffer`, row-slotted activation buffer
* :mod:`.window`      -- :class:`WindowGenerator`, k×k tap / tile issue sequence
* :mod:`.pe`          -- :class:`PEArray`, p_out × p_in ADDER / BINARY / INT8 MUL PEs
* :mod:`.postproc`    -- :class:`PostProcess`, per-channel affine + requantize/binarize
* :mod:`.engine`      -- :class:`ConvEngine`, the streaming engine with cycle counters

Parameters come from :class:`nmaccel.spec.config.ConvConfig`; formats, the bit-exact
integer reference and the cycle prediction are in :mod:`nmaccel.model.conv_ref`.
"""
