"""Command checks of the STA controller: field values, sizes and buffer ranges.

A command's buffer extents are computed in two registered steps (the products of its sizes and
strides from the fetched word, then the sums), so that no multiplier sits on the CBUF read or
the check: extents are in entries, ABUF outputs scaled to slots (``entry · window + slot``),
softmax outputs in SBUF slots. The check gives the first error of the command in the order of
:data:`~nmaccel.spec.sta_isa.ERRORS`' rules (GEMM: format, destination, zero size, shape,
softmax block, WBUF, ABUF, output, PBUF; vector commands: destination, zero size, VBUF, ABUF,
PBUF; FETCH, on a core with external memory: WBUF, PBUF, the SDRAM's range; other opcodes but
NOP: unknown opcode).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.sta.isa import ASrc, Dest, Mode, Opcode, Osel, Post, WSrc, command_layout
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig

__all__ = ["CommandChecker"]

_ERR = sta_isa.ERROR_CODES
#: width of the extents (sums of products of 16-bit fields)
EXTENT_BITS = 2 * (2 * sta_isa.DIM_BITS + 8)


def _first(rules, default=0):
    """The value of the first rule ``(condition, value)`` that holds, else ``default``."""
    result = default
    for condition, value in reversed(rules):
        result = Mux(condition, value, result)
    return result


class CommandChecker(wiring.Component):
    """Extents of a command and its error code.

    Parameters
    ----------
    config : StaConfig

    Attributes
    ----------
    word : In(command_layout)
        The fetched command word.
    cmd : In(command_layout)
        The same command, registered from ``word`` in the ``decode1`` cycle.
    decode1 : In(1)
        Register the products of ``word``'s sizes and strides.
    decode2 : In(1)
        Register the extents of ``cmd`` (products from ``decode1``).
    code : Out(8)
        The command's error code (:data:`~nmaccel.spec.sta_isa.ERROR_CODES`; 0: none), valid
        from the cycle after ``decode2``.

    Latency: ``decode1`` in cycle ``t``, ``decode2`` in ``t + 1``, ``code`` in ``t + 2``.
    """

    def __init__(self, config: StaConfig) -> None:
        StaConfig.require(config)
        self.config = config
        self.attention = sta_isa.attention_supported(config) is None
        self.fetch = config.sdram_timing is not None     # FETCH is known
        super().__init__({
            "word": In(command_layout(config)),
            "cmd": In(command_layout(config)),
            "decode1": In(1),
            "decode2": In(1),
            "code": Out(8),
        })

    def _extents(self, m: Module) -> dict:
        """Registers the extents (``decode2``) from the products (``decode1``)."""
        cfg, cmd, word = self.config, self.cmd, self.word
        R, C, Wd = cfg.rows, cfg.cols, cfg.dense_window
        ratio = sta_isa.dense_ratio(cfg)
        products = {
            "w": (word.m_tiles - 1) * word.w_stride, "mk": word.m_tiles * word.k_steps,
            "a": (word.n_tiles - 1) * word.a_stride, "nm": word.n_tiles * word.m_tiles,
            "on": (word.n_tiles - 1) * word.o_stride, "om": (word.m_tiles - 1) * word.o_stride,
        }
        xp = {k: Signal(v.shape(), name=f"xp_{k}") for k, v in products.items()}
        with m.If(self.decode1):
            m.d.sync += [xp[k].eq(v) for k, v in products.items()]
        ext = {k: Signal(EXTENT_BITS, name=f"ext_{k}") for k in
               ("w", "a", "o", "p", "wlim", "alim", "olim")}
        steps = cmd.k_steps
        if ratio > 1:
            steps = Mux(cmd.mode == Mode.DENSE, (cmd.k_steps + (ratio - 1)) // ratio, cmd.k_steps)

        def by_layout(x):                   # x · window with constant factors (no multiplier)
            return Mux(cmd.olay, x * Wd, x * cfg.acts_per_cycle)
        post_words = Mux(cmd.post == Post.GELU, 2, Mux(cmd.post == Post.ADD, 1, 0))
        w_abuf = cmd.wsrc == WSrc.ABUF
        gemm = {
            "w": Mux(w_abuf, cmd.w_base + xp["w"] + steps, cmd.w_base + xp["mk"]),
            "wlim": Mux(w_abuf, cfg.abuf_depth, cfg.wbuf_depth),
            "a": cmd.a_base + xp["a"] + steps,
            "alim": Mux(cmd.asrc == ASrc.SBUF, cfg.sbuf_depth, cfg.abuf_depth),
            "p": cmd.p_base + cmd.m_tiles * R + post_words,
        }
        outputs = {  # per destination: (extent, limit)
            Dest.OBUF: (cmd.o_base + xp["nm"] * R, cfg.obuf_depth),
            Dest.VBUF: (cmd.o_base + xp["on"] + cmd.m_tiles * R, cfg.vbuf_depth),
            Dest.ABUF: (by_layout(cmd.o_base + xp["on"]) + cmd.m_tiles * R,
                        by_layout(cfg.abuf_depth)),
            Dest.ABUF_T: (by_layout(cmd.o_base + xp["om"]) + cmd.n_tiles * C,
                          by_layout(cfg.abuf_depth)),
        }
        with m.If(self.decode2 & (cmd.op == Opcode.GEMM)):
            m.d.sync += [ext[k].eq(v) for k, v in gemm.items()]
            with m.Switch(cmd.dest):
                for dest, (extent, limit) in outputs.items():
                    with m.Case(dest):
                        m.d.sync += [ext["o"].eq(extent), ext["olim"].eq(limit)]
                with m.Default():       # softmax: the probability block in SBUF
                    m.d.sync += [ext["o"].eq(cmd.o_base * Wd + cmd.length),
                                 ext["olim"].eq(cfg.sbuf_depth * Wd)]
        if self.fetch:
            with m.Elif(self.decode2 & (cmd.op == Opcode.FETCH)):
                words = sta_isa.fetch_words(cfg, cmd.ext_wlen, cmd.ext_plen)
                m.d.sync += [ext["w"].eq(cmd.w_base + cmd.ext_wlen),
                             ext["wlim"].eq(cfg.wbuf_depth), ext["p"].eq(cmd.p_base + cmd.ext_plen),
                             ext["o"].eq(cmd.ext_addr + words),
                             ext["olim"].eq(1 << cfg.sdram_timing.addr_bits)]
        with m.Elif(self.decode2):      # vector commands
            m.d.sync += [
                ext["a"].eq(cmd.a_base + xp["a"] + cmd.length), ext["alim"].eq(cfg.vbuf_depth),
                ext["o"].eq(by_layout(cmd.o_base + xp["on"]) + cmd.length),
                ext["olim"].eq(by_layout(cfg.abuf_depth)),
                ext["p"].eq(cmd.p_base + Mux(cmd.op == Opcode.LAYERNORM, cmd.length + 2, 1)),
            ]
        return ext

    def _gemm_rules(self, ext) -> list:
        cfg, cmd = self.config, self.cmd
        R, C = cfg.rows, cfg.cols
        key_tiles = -(-cfg.max_seq // C)
        dest = cmd.dest
        softmax = dest == Dest.SOFTMAX
        dest_bad = (dest.as_value() > Dest.SOFTMAX) | (cmd.post.as_value() > Post.ADD) \
            | ((cmd.post == Post.ADD) & (dest != Dest.VBUF))
        shape_bad = Const(0)
        if R != C:
            shape_bad = (cmd.wsrc == WSrc.ABUF) | (dest == Dest.ABUF_T)
        for olay in (0, 1):
            if not sta_isa.layout_supported(cfg, olay):
                dest_bad = dest_bad | ((dest == Dest.ABUF) & (cmd.olay == olay))
            if sta_isa.window(cfg, olay) % C:
                shape_bad = shape_bad | ((dest == Dest.ABUF_T) & (cmd.olay == olay))
        shape_bad = shape_bad | (((cmd.wsrc == WSrc.ABUF) | (cmd.asrc == ASrc.SBUF))
                                 & (cmd.mode != Mode.DENSE))
        if not self.attention:
            shape_bad = shape_bad | softmax
        seq_bad = softmax & ((cmd.m_tiles != 1) | (cmd.length == 0)
                             | (cmd.length > cfg.max_seq) | (cmd.length > cmd.n_tiles * C)
                             | (cmd.n_tiles > key_tiles))
        output_error = Mux(dest == Dest.VBUF, _ERR["vbuf"],
                           Mux((dest == Dest.ABUF) | (dest == Dest.ABUF_T), _ERR["abuf"],
                               _ERR["obuf"]))
        return [
            (cmd.osel.as_value() > Osel.SCORE, _ERR["osel"]),
            (dest_bad, _ERR["dest"]),
            ((cmd.m_tiles == 0) | (cmd.n_tiles == 0) | (cmd.k_steps == 0), _ERR["zero"]),
            (shape_bad, _ERR["shape"]),
            (seq_bad, _ERR["seq"]),
            (ext["w"] > ext["wlim"], _ERR["wbuf"]),
            (ext["a"] > ext["alim"], _ERR["abuf"]),
            (ext["o"] > ext["olim"], output_error),
            (ext["p"] > cfg.pbuf_depth, _ERR["pbuf"]),
        ]

    def _vector_rules(self, ext) -> list:
        cmd = self.cmd
        return [
            (cmd.dest.as_value() > Dest.ABUF, _ERR["dest"]),
            ((cmd.n_tiles == 0) | (cmd.length == 0), _ERR["zero"]),
            (ext["a"] > ext["alim"], _ERR["vbuf"]),
            (ext["o"] > ext["olim"], _ERR["abuf"]),
            (ext["p"] > self.config.pbuf_depth, _ERR["pbuf"]),
        ]

    def _fetch_rules(self, ext) -> list:
        return [
            (ext["w"] > ext["wlim"], _ERR["wbuf"]),
            (ext["p"] > self.config.pbuf_depth, _ERR["pbuf"]),
            (ext["o"] > ext["olim"], _ERR["ext"]),
        ]

    def elaborate(self, platform) -> Module:
        m = Module()
        op = self.cmd.op
        ext = self._extents(m)
        vector = (op == Opcode.LAYERNORM) | (op == Opcode.REQUANT)
        rules = [(op == Opcode.GEMM, _first(self._gemm_rules(ext))),
                 (vector, _first(self._vector_rules(ext)))]
        if self.fetch:
            rules.append((op == Opcode.FETCH, _first(self._fetch_rules(ext))))
        m.d.comb += self.code.eq(_first(rules + [(op == Opcode.NOP, 0)],
                                        default=_ERR["opcode"]))
        return m
