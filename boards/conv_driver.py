"""Host driver for the conv engine on a board (or a simulated board) over the UART bridge:
:class:`ConvBoard` (the link itself is :class:`~nmaccel.boards.driver.BridgeBoard`'s).

A layer is a :class:`~nmaccel.model.conv_ref.ConvLayerJob`, packed by the golden model's own
functions (:func:`~nmaccel.model.conv_ref.pack_weights`, ``pack_params``, ``pack_settings``,
``pack_inputs``) into the address map of :mod:`nmaccel.spec.conv_host`. Running it streams the
input and collects the output under the host's flow control: every round reads STATUS,
IN_FREE and OUT_COUNT (one READ), then reads at most OUT_COUNT output beats and writes at most
IN_FREE input beats, so no request ever waits on the engine.

Example::

    board = ConvBoard(SerialTransport("/dev/ttyUSB1", 115200), conv_preset("icebreaker"))
    board.check()                              # PING: the board runs this config's design
    out = board.run_net(qnet, images)          # {"logits": (N, 10), "counters": ...}
"""

from __future__ import annotations

import time

import numpy as np

from nmaccel.boards.driver import BoardError, BoardTimeout, BridgeBoard, write_runs
from nmaccel.model.conv_ref import (
    ConvLayerJob,
    check_job_fits,
    layer_input,
    output_beats,
    pack_inputs,
    pack_params,
    pack_settings,
    pack_weights,
    unpack_outputs,
)
from nmaccel.spec import conv_host as H
from nmaccel.spec import uart_protocol as proto
from nmaccel.spec.config import ConvConfig
from nmaccel.spec.conv_format import settings_bits

__all__ = ["ConvBoard", "ConvHostError"]


class ConvHostError(BoardError):
    """The host port flagged a protocol error (a sticky STATUS bit)."""


class ConvBoard(BridgeBoard):
    """The conv engine behind a UART bridge (:class:`~nmaccel.boards.uart_top.
    ConvUartTop`), reached through ``transport``; ``config`` is its
    :class:`~nmaccel.spec.config.ConvConfig`. See the module docstring."""

    config_type = ConvConfig

    def _csr(self, name: str, offset: int = 0) -> int:
        return H.host_address(self.config, "CSR", H.CSR[name] + offset)

    def status(self) -> dict:
        """CSR STATUS decoded (:data:`~nmaccel.spec.conv_host.STATUS_FIELDS`) plus ``raw``."""
        raw = self.read(self.status_address(), 1)[0]
        return {"raw": raw, **H.decode_status(raw)}

    def counters(self) -> dict:
        """The engine's counters of the last run, by their port names (``cyc_total``, ...)."""
        words = self.read(self._csr(H.COUNTERS[0]), len(H.COUNTERS))
        return {name.lower(): w for name, w in zip(H.COUNTERS, words)}

    def load_layer(self, job: ConvLayerJob) -> None:
        """Write the layer's weights, parameters and settings (the engine must be idle)."""
        cfg = self.config
        if not isinstance(job, ConvLayerJob):
            raise TypeError(f"job must be a ConvLayerJob, not {type(job).__name__}")
        check_job_fits(job, cfg)
        if not self.checked:
            self.check()
        if self.status()["busy"]:
            raise BoardError("the conv engine is running: a layer loads only while it is idle")
        for space, entries in (("WMEM", pack_weights(job, cfg)), ("PMEM", pack_params(job, cfg))):
            width = H.space_width(cfg, space)
            writes = [(H.host_address(cfg, space, e, k), w)
                      for e, entry in enumerate(entries)
                      for k, w in enumerate(proto.split_words(entry, width))]
            for a, words in write_runs(writes):
                self.write(a, words)
        self.write(self._csr("SETTINGS"),
                   proto.split_words(pack_settings(job, cfg), settings_bits(cfg)))

    def run_layer(self, job: ConvLayerJob, x, timeout: float = 60.0) -> tuple[list[int], dict]:
        """Run the loaded layer ``job`` on input ``x`` (C, H, W): START, stream the input and
        collect the output beats under flow control, then read the counters. Returns ``(output
        beats, counters)``. Raises :class:`~nmaccel.boards.driver.BoardTimeout` when no beat
        moves for ``timeout`` seconds, :class:`ConvHostError` on a sticky error bit."""
        cfg = self.config
        beats = pack_inputs(job, cfg, x)
        n_out = output_beats(job, cfg)
        in_words, out_words = H.stream_words(cfg, "IN"), H.stream_words(cfg, "OUT")
        in_bits = H.space_width(cfg, "IN")
        in_addr = H.host_address(cfg, "IN")
        out_addr = H.host_address(cfg, "OUT")
        per_write = proto.MAX_WORDS // in_words
        per_read = proto.MAX_WORDS // out_words
        self.transact(proto.encode_start(0, self.next_tag()))
        sent, out = 0, []
        deadline = time.monotonic() + timeout
        while True:
            raw, free, count = self.read(self.status_address(), 3)
            st = H.decode_status(raw)
            bad = [f for f in ("write_lost", "in_overflow", "out_underflow") if st[f]]
            if bad:
                raise ConvHostError(f"the conv host port flagged {', '.join(bad)} (STATUS "
                                    f"0x{raw:08X}) during layer {job.name or job.mode!r}")
            if st["done"] and len(out) == n_out and sent == len(beats):
                break
            if count > n_out - len(out):
                raise BoardError(f"the engine gave more than the {n_out} output beats of layer "
                                 f"{job.name or job.mode!r}")
            moved = False
            while count:
                k = min(count, per_read)
                words = self.read(out_addr, k * out_words)
                out += [proto.join_words(words[i:i + out_words])
                        for i in range(0, len(words), out_words)]
                count -= k
                moved = True
            while free and sent < len(beats):
                k = min(free, per_write, len(beats) - sent)
                self.write(in_addr, [w for b in beats[sent:sent + k]
                                     for w in proto.split_words(b, in_bits)])
                sent += k
                free -= k
                moved = True
            if moved:
                deadline = time.monotonic() + timeout
            elif time.monotonic() > deadline:
                raise BoardTimeout(f"layer {job.name or job.mode!r}: no beat moved for "
                                   f"{timeout} s ({sent} of {len(beats)} input beats sent, "
                                   f"{len(out)} of {n_out} output beats read, STATUS "
                                   f"0x{raw:08X})")
        return out, self.counters()

    def run_net(self, qnet, images, timeout: float = 60.0) -> dict:
        """A whole :class:`~nmaccel.model.conv_nets.QuantNet` on ``images`` (N, 8, 8), layer by
        layer (each layer's weights loaded once), each layer's input being the board's own
        output of the layer before (the host reshapes between layers as the golden model
        does). Returns ``{"logits": (N, C) v of the last layer, "counters": [[per layer] per
        image]}`` (what :func:`nmaccel.sim.conv_harness.run_net` returns)."""
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[1:] != (8, 8):
            raise ValueError(f"images must have shape (N, 8, 8), not {images.shape}")
        for job in qnet.jobs:
            check_job_fits(job, self.config)
        acts = [img.astype(np.int64)[None] for img in images]
        counters: list[list[dict]] = [[] for _ in acts]
        logits = None
        for job, how in zip(qnet.jobs, qnet.inputs):
            self.load_layer(job)
            nxt, vs = [], []
            for n, x in enumerate(acts):
                beats, cnt = self.run_layer(job, layer_input(job, x, how), timeout)
                v, q = unpack_outputs(job, self.config, beats)
                nxt.append(q)
                vs.append(v.reshape(-1))
                counters[n].append(cnt)
            acts = nxt
            logits = np.stack(vs)
        return {"logits": logits, "counters": counters}

