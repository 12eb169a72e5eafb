"""k×k window generator of the conv engine: the issue sequence of one output row.

For output row ``oy`` it walks ``ox, ot, ky, kx, it`` (``it`` innermost) and issues one beat
per cycle while ``run`` is high: input tile ``it`` of tap ``(iy, ix) = (oy·s − p + ky,
ox·s − p + kx)`` from the line buffer against weight word ``waddr = ((ot·k + ky)·k + kx)·IT
+ it``. ``sval`` flags taps inside the image (0 on zero padding), ``chan`` the lanes that
hold real input channels (``it·p_in + lane < C_in``). A beat that starts an accumulation
group (``first``: ky = kx = it = 0) is issued only with ``credit_ok``; the others always.
After the row's last beat (``row_last``) every counter is back at 0 for the next row;
``clear`` forces them to 0 and must come (with the layer's settings) before a layer's first
``run``: it also sets the registered "counter at its last value" flags.

Ports
    ``layer`` In settings (``k3``, ``stride2``, ``pad``, ``height``, ``width``, ``cin``,
    ``in_tiles``, ``out_tiles``);  ``oy`` In;  ``run``, ``credit_ok``, ``clear`` In 1
    ``issue``, ``first``, ``last``, ``row_last``, ``sval`` Out 1;  ``chan`` Out ``p_in``
    ``iy``, ``ix`` Out signed;  ``it``, ``ot``, ``waddr`` Out
Combinational outputs from registered counters; one beat per cycle. The output width is
registered from the settings: hold them from at least one cycle before ``run``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.spec.config import ConvConfig, clog2

__all__ = ["WindowGenerator"]


class WindowGenerator(wiring.Component):
    """Issue sequencer of one output row (see the module docstring)."""

    def __init__(self, config: ConvConfig) -> None:
        if not isinstance(config, ConvConfig):
            raise TypeError(f"config must be a ConvConfig, not {type(config).__name__}")
        from .engine import settings_layout
        self.config = config
        self.hb = clog2(config.max_height + 1) + 2
        self.wb = clog2(config.max_width + 1) + 2
        super().__init__({
            "layer": In(settings_layout(config)),
            "oy": In(self.hb),
            "run": In(1), "credit_ok": In(1), "clear": In(1),
            "issue": Out(1), "first": Out(1), "last": Out(1), "row_last": Out(1),
            "sval": Out(1), "chan": Out(config.p_in),
            "iy": Out(signed(self.hb + 2)), "ix": Out(signed(self.wb + 2)),
            "it": Out(range(config.max_in_tiles + 1)),
            "ot": Out(range(config.max_out_tiles + 1)),
            "waddr": Out(range(config.weight_depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        L = self.layer
        kk = Signal(range(4))
        m.d.comb += kk.eq(Mux(L.k3, 3, 1))
        ox = Signal(self.wb)
        ky, kx = Signal(2), Signal(2)
        it, ot, waddr = (Signal.like(self.it, name="it_r"), Signal.like(self.ot, name="ot_r"),
                         Signal.like(self.waddr, name="waddr_r"))
        m.d.comb += [self.it.eq(it), self.ot.eq(ot), self.waddr.eq(waddr)]

        # Each counter's "at its last value" flag is a register, set whenever the counter
        # changes, so last / row_last / issue are a few gates behind registers (on the
        # iCE40UP5K settings → in_tiles − 1 → it == last → row_last → issue → engine FSM was
        # the critical path, 30.8 ns). A flag's next value is one equality against a register:
        # per counter "one value only" (its last value is 0) and the value before its last
        # (``pen``, modulo the counter's width; unused with one value), registered from the
        # settings, which the engine holds from its start cycle (the window runs from the
        # cycle after the first load phase); ``clear`` (in the start cycle) sets the flags
        # from the settings themselves.
        ox_last = Signal.like(ox, name="ox_last_comb")
        m.d.comb += ox_last.eq((L.width + 2 * L.pad - kk) >> L.stride2)
        ends = {}
        for name, ctr, last_value in (("it", it, L.in_tiles - 1), ("k", kx, kk - 1),
                                      ("ot", ot, L.out_tiles - 1), ("ox", ox, ox_last)):
            one = Signal(name=f"{name}_one")
            pen = Signal.like(ctr, name=f"{name}_pen")
            m.d.sync += [one.eq(last_value == 0), pen.eq(last_value - 1)]
            ends[name] = (one, pen)
        last_it, last_kx, last_ky, last_ot, last_ox = (
            Signal(name=f"last_{n}") for n in ("it", "kx", "ky", "ot", "ox"))
        first = Signal(name="first_r")             # ky = kx = it = 0, registered likewise
        m.d.comb += [
            self.first.eq(first),
            self.last.eq(last_ky & last_kx & last_it),
            self.row_last.eq(self.last & last_ot & last_ox),
            self.issue.eq(self.run & (~self.first | self.credit_ok)),
            self.iy.eq((self.oy << L.stride2) + ky - L.pad),
            self.ix.eq((ox << L.stride2) + kx - L.pad),
            self.sval.eq((self.iy >= 0) & (self.iy < L.height) &
                         (self.ix >= 0) & (self.ix < L.width)),
        ]
        rem = Signal(signed(clog2(cfg.max_in_channels + 1) + 2))
        m.d.comb += [rem.eq(L.cin - it * cfg.p_in),
                     self.chan.eq(Cat(*[rem > i for i in range(cfg.p_in)]))]

        # The counters advance on flat conditions, issue AND'ed with flags only (a nested If
        # per counter chained the enables: issue → it → kx → ky → ot → ox, 8 LUT levels).
        wraps = [last_it]
        for f in (last_kx, last_ky, last_ot):
            w = Signal(name=f"wrap_{f.name[5:]}")
            m.d.comb += w.eq(wraps[-1] & f)
            wraps.append(w)
        with m.If(self.clear):
            m.d.sync += [ox.eq(0), ot.eq(0), ky.eq(0), kx.eq(0), it.eq(0), waddr.eq(0),
                         first.eq(1),
                         last_it.eq(L.in_tiles == 1), last_kx.eq(~L.k3), last_ky.eq(~L.k3),
                         last_ot.eq(L.out_tiles == 1), last_ox.eq(ox_last == 0)]
        with m.Elif(self.issue):
            # the next beat starts a group after a group's last beat
            m.d.sync += [waddr.eq(Mux(wraps[3], 0, waddr + 1)), first.eq(self.last)]
            counters = ((it, last_it, ends["it"]), (kx, last_kx, ends["k"]),
                        (ky, last_ky, ends["k"]), (ot, last_ot, ends["ot"]),
                        (ox, last_ox, ends["ox"]))
            for j, (counter, flag, (one, pen)) in enumerate(counters):
                # counter j moves when every counter inside it wraps
                with m.If(Const(1) if j == 0 else wraps[j - 1]):
                    with m.If(flag):
                        m.d.sync += [counter.eq(0), flag.eq(one)]
                    with m.Else():
                        m.d.sync += [counter.eq(counter + 1), flag.eq(counter == pen)]
        return m
