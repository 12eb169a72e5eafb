"""The conv engine's host address map, defined once (pure Python): the host port
(:class:`nmaccel.hw.conv.host_port.ConvHostPort`), the UART bridge and the host driver
(:class:`nmaccel.boards.driver.ConvBoard`) read it.

A host address is ``space << space_shift | entry << sub_bits | sub``; every word is 32 bits
(an entry's words: :func:`nmaccel.spec.uart_protocol.split_words`).

======  ==========================================================================================
space   contents
======  ==========================================================================================
CSR     control and status words (:data:`CSR`), one 32-bit word each
WMEM    weight memory entries (``p_out × p_in`` weights, :func:`nmaccel.model.conv_ref.
        pack_weights`), write only; slice ``sub`` holds bits ``32·sub ..``; an entry is written
        when its last slice arrives (the slices of one entry in order, as a WRITE frame sends
        consecutive addresses)
PMEM    parameter memory entries (``param_depth``: one per output tile and lane group,
        :func:`~nmaccel.model.conv_ref.pack_params`), write only, like WMEM
IN      the input stream: every word written anywhere in the space is the next 32-bit slice of
        the next input beat (:func:`~nmaccel.model.conv_ref.pack_inputs`,
        :func:`stream_words` slices a beat); the beat enters the input FIFO
        (:data:`IN_DEPTH` beats) with its last slice
OUT     the output stream: every word read anywhere in the space is the next slice of the
        output FIFO's head beat (the engine's own output FIFO, ``out_fifo_depth``
        beats of ``out_lanes`` lanes: ``q`` lanes then ``v`` lanes, as the
        engine's ``o`` stream); the beat leaves the FIFO with its last slice
======  ==========================================================================================

Flow control is the host's: it writes at most ``IN_FREE`` beats and reads at most
``OUT_COUNT`` beats (both CSRs), so a request never waits on the engine and the engine never
waits on a request: no deadlock however the engine interleaves taking input and giving output.
A write that finds the input FIFO full, a read of an empty output FIFO (it returns 0) and a
write of WMEM, PMEM or SETTINGS while the engine runs (the write is dropped) set sticky STATUS
bits that START clears. STATUS ``done`` is set when the run ends and stays set until START.
START (a write of CSR START, or the bridge's START command) runs the layer in SETTINGS; while
the engine runs it is ignored. START also clears the slice counters of IN and OUT.
"""

from __future__ import annotations

import functools

from nmaccel.spec.config import ConvConfig, clog2
from nmaccel.spec.conv_format import param_fields, settings_bits

__all__ = ["SPACES", "CSR", "COUNTERS", "STATUS_FIELDS", "IN_DEPTH",
           "STREAM_WINDOW", "decode_status", "space_width", "space_depth", "sub_words",
           "sub_bits", "space_shift", "addr_bits", "host_address", "settings_words",
           "stream_words"]

SPACES = {"CSR": 0, "WMEM": 1, "PMEM": 2, "IN": 3, "OUT": 4}

#: CSR entries (space 0). SETTINGS is the first of :func:`settings_words` words holding the
#: packed layer settings (:func:`nmaccel.model.conv_ref.pack_settings`), lowest bits first.
CSR = {
    "START": 0,          # W: run the layer in SETTINGS (data ignored)
    "STATUS": 1,         # R: :data:`STATUS_FIELDS`
    "IN_FREE": 2,        # R: free beats in the input FIFO
    "OUT_COUNT": 3,      # R: beats waiting in the output FIFO
    "CYC_TOTAL": 4,      # R: the engine's counters of the last run (cyc_total ...)
    "CYC_ACTIVE": 5,
    "CYC_LOAD": 6,
    "CYC_STALL": 7,
    "SETTINGS": 8,       # R/W: the layer settings, :func:`settings_words` words
}

#: The counters (CSR names), in the engine's order (``cyc_total``, ``cyc_active``, ...).
COUNTERS = ("CYC_TOTAL", "CYC_ACTIVE", "CYC_LOAD", "CYC_STALL")

#: CSR STATUS bits, LSB first.
STATUS_FIELDS = ("busy", "done", "write_lost", "in_overflow", "out_underflow")

#: Beats of the host port's input FIFO.
IN_DEPTH = 256

#: Entries of the IN and OUT spaces: a frame of up to ``MAX_WORDS`` words stays inside.
STREAM_WINDOW = 64


def decode_status(word: int) -> dict[str, bool]:
    """CSR STATUS as ``{field: bool}``."""
    return {name: bool((word >> i) & 1) for i, name in enumerate(STATUS_FIELDS)}


def _words(bits: int) -> int:
    return -(-bits // 32)


def settings_words(cfg: ConvConfig) -> int:
    """32-bit words of the packed layer settings."""
    return _words(settings_bits(cfg))


def stream_words(cfg: ConvConfig, space: str) -> int:
    """32-bit slices of one ``IN`` or ``OUT`` beat."""
    if space not in ("IN", "OUT"):
        raise ValueError(f"space must be 'IN' or 'OUT', not {space!r}")
    return _words(space_width(cfg, space))


def space_width(cfg: ConvConfig, space: str) -> int:
    """Bits of one entry (WMEM, PMEM) or beat (IN, OUT) of ``space``; 32 for CSR."""
    if space == "WMEM":
        return cfg.p_out * cfg.p_in * cfg.data_bits
    if space == "PMEM":
        return cfg.out_lanes * sum(b for _, b, _ in param_fields(cfg))
    if space == "IN":
        return cfg.p_in * cfg.data_bits
    if space == "OUT":
        return cfg.out_lanes * (8 + cfg.bias_bits)
    if space == "CSR":
        return 32
    raise ValueError(f"space must be one of {list(SPACES)}, not {space!r}")


def space_depth(cfg: ConvConfig, space: str) -> int:
    """Entries of ``space`` in the address map."""
    if space == "WMEM":
        return cfg.weight_depth
    if space == "PMEM":
        return cfg.param_depth
    if space in ("IN", "OUT"):
        return STREAM_WINDOW
    if space == "CSR":
        return CSR["SETTINGS"] + settings_words(cfg)
    raise ValueError(f"space must be one of {list(SPACES)}, not {space!r}")


def sub_words(cfg: ConvConfig, space: str) -> int:
    """Address slices per entry: the entry's 32-bit words for WMEM and PMEM, else 1 (IN and
    OUT are word streams: every address of theirs is the next slice)."""
    return _words(space_width(cfg, space)) if space in ("WMEM", "PMEM") else 1


@functools.cache
def sub_bits(cfg: ConvConfig, space: str) -> int:
    return clog2(sub_words(cfg, space))


@functools.cache
def space_shift(cfg: ConvConfig) -> int:
    """Position of the space number in a host address."""
    return max(clog2(space_depth(cfg, s)) + sub_bits(cfg, s) for s in SPACES)


@functools.cache
def addr_bits(cfg: ConvConfig) -> int:
    return space_shift(cfg) + clog2(len(SPACES))


def host_address(cfg: ConvConfig, space: str, entry: int = 0, sub: int = 0) -> int:
    """The host address of slice ``sub`` of entry ``entry`` of ``space``."""
    depth = space_depth(cfg, space)
    if not isinstance(entry, int) or not 0 <= entry < depth:
        raise ValueError(f"{space} entry must be an integer in [0, {depth}), not {entry!r}")
    if not isinstance(sub, int) or not 0 <= sub < sub_words(cfg, space):
        raise ValueError(f"{space} slice must be in [0, {sub_words(cfg, space)}), not {sub!r}")
    return (SPACES[space] << space_shift(cfg)) | (entry << sub_bits(cfg, space)) | sub
