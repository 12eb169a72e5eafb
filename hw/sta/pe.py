"""N:M sparse processing element (PE) of the STA array.

One PE holds ``L = cfg.lanes`` signed ``weight_bits`` × ``act_bits`` multipliers. Every cycle it
takes one weight word of ``L`` (value, index) entries -- the layout of
:func:`nmaccel.model.nm.pack_words`, entries in (group, k) order -- and a window of
``acts_per_cycle = L * m // n`` activations, and adds the ``L`` products into an
``acc_bits`` accumulator (two's complement, wrapping).

Multiplier ``j`` multiplies ``w_value[j]`` by ``act[(j // n) * m + w_index[j]]``: each group
of ``n`` multipliers shares a window of ``m`` activations through an ``m``:1 mux per
multiplier. The PE has no dense mode of its own: for a dense word the array
(:class:`~nmaccel.hw.sta.array.UnifiedMacArray`) presents the index ``j % n`` to multiplier
``j`` and places the word's ``j``-th activation at window position ``(j // n) * m + j % n``
(:func:`dense_position`), so the same ``m``:1 mux serves both modes (a separate dense input
made it an ``(m + 1)``:1 mux: one more LUT4 per operand bit, 2,048 of them on ``ulx3s_lut``).

Pipeline (``latency = 4 + clog2(L)`` register stages with DSP products,
``5 + clog2(L)`` with ``array_lut`` and 8-bit weights; :func:`nmaccel.spec.sta_timing.pe_latency`)
    1. activation mux, the selected operand and the weight registered; the weight register
       is the PE's own, not the row's, which Yosys would otherwise merge with the row's other
       PEs' into one (DSP products: the weight zeroed where the operand is zero; ``array_lut``:
       a plain copy, :func:`~nmaccel.hw.common.fanout.own_copy`); so are ``valid`` and
       ``clear``;
    2. DSP products: copies of both operands that feed only their multiplier, then the
       product (2 stages); then ``clog2(L)`` adder-tree levels, each registered (none for
       ``L = 1``). ``array_lut``: each multiplier's row-pair sums in LUTs and carry chains
       (:func:`~nmaccel.hw.common.lutmul.pair_sums`, 1 stage), the sums of equal weight
       added over the lanes (``clog2(L)`` levels), then the classes combined with their
       shifts (``clog2(pairs)`` levels, 2 for 8-bit weights): as many stages as a
       :class:`~nmaccel.hw.common.lutmul.CarryProduct` and a tree of products, with narrower
       adders and no pass-through bits (a ulx3s_lut PE alone: 2,051 LUT, 1,847 FF against
       2,159 and 2,010);
    3. accumulate, registered into ``acc``.

    ``valid`` and ``clear`` travel down the pipeline with their beat. A beat whose inputs are
    presented before clock tick ``t`` (sampled by tick ``t``) is included in ``acc`` right after
    tick ``t + latency - 1``, i.e. ``latency`` ticks counting the sampling one. When a beat with
    ``clear = 1`` reaches the accumulator, the old sum is dropped: ``acc`` becomes that beat's
    sum (``valid = 1``) or 0 (``valid = 0``). So ``clear`` is asserted together with the
    first word of a new dot product, and words can stream back to back with no bubble.
    ``acc_valid`` is 1 for one cycle after each valid beat has been accumulated.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.arith import delay_chain, sum_pairs
from nmaccel.hw.common.dsp import REGISTERED_PRODUCT_LATENCY, registered_product
from nmaccel.hw.common.fanout import own_copy
from nmaccel.hw.common.lutmul import chained_sum_pairs, pair_sums
from nmaccel.spec.config import StaConfig, clog2
from nmaccel.spec.sta_timing import pe_latency

__all__ = ["NMProcessingElement", "dense_position"]


def dense_position(config: StaConfig, j: int) -> int:
    """Window position of multiplier ``j``'s activation for a dense word (index ``j % n``)."""
    return (j // config.n) * config.m + j % config.n


class NMProcessingElement(wiring.Component):
    """One PE: ``L`` multipliers behind registered ``m``:1 activation muxes, a pipelined adder
    tree and an accumulator (see the module docstring for the exact behaviour and timing).

    Ports
        ``w_value``  In  ``ArrayLayout(signed(weight_bits), L)``  -- weight values
        ``w_index``  In  ``ArrayLayout(unsigned(index_bits), L)`` -- N:M indices (dense: ``j % n``)
        ``act``      In  ``ArrayLayout(signed(act_bits), acts_per_cycle)`` -- activation window
        ``a_unsigned`` In 1 -- activations are unsigned ``act_bits`` (P·V probabilities)
        ``valid``    In  1  -- the inputs of this cycle are a beat
        ``clear``    In  1  -- this beat starts a new accumulation
        ``acc``      Out ``signed(acc_bits)``
        ``acc_valid`` Out 1 -- a valid beat was accumulated on the last tick

    Attributes
        ``latency``  register stages from input to ``acc`` (``4 + clog2(L)``)
        ``tree_levels`` adder-tree levels (``clog2(L)``)
    """

    def __init__(self, config: StaConfig) -> None:
        StaConfig.require(config)
        self.config = config
        self.lanes = config.lanes
        self.n = config.n
        self.m = config.m
        self.acts_per_cycle = config.acts_per_cycle
        self.index_bits = max(config.index_bits, 1)
        self.product_bits = config.act_bits + 1 + config.weight_bits
        self.tree_levels = clog2(config.lanes)
        self.latency = pe_latency(config)
        super().__init__({
            "w_value": In(data.ArrayLayout(signed(config.weight_bits), config.lanes)),
            "w_index": In(data.ArrayLayout(unsigned(self.index_bits), config.lanes)),
            "act": In(data.ArrayLayout(signed(config.act_bits), config.acts_per_cycle)),
            "a_unsigned": In(1),
            "valid": In(1),
            "clear": In(1),
            "acc": Out(signed(config.acc_bits)),
            "acc_valid": Out(1),
        })

    # -- cycle accounting -------------------------------------------------------------------

    def words(self, k_cols: int, dense: bool = False) -> int:
        """Input words (beats) of one dot product over ``k_cols`` dense input columns."""
        if not isinstance(k_cols, int) or isinstance(k_cols, bool) or k_cols < 0:
            raise ValueError(f"k_cols must be a non-negative integer, not {k_cols!r}")
        if dense:
            return -(-k_cols // self.lanes)
        if k_cols % self.m:
            raise ValueError(f"k_cols must be a multiple of m={self.m} in sparse mode, "
                             f"not {k_cols}")
        return -(-(k_cols // self.m) * self.n // self.lanes)

    def get_exp_cycles(self, k_cols: int, dense: bool = False) -> int:
        """Clock ticks from presenting the first of back-to-back beats until ``acc`` holds a
        ``k_cols`` dot product: ``words + latency - 1``."""
        return self.words(k_cols, dense) + self.latency - 1

    # -- hardware -------------------------------------------------------------------------------

    def _dsp_dot(self, m: Module, platform, wvs, opnds) -> tuple:
        """``Σ_j wv_j · opnd_j`` with DSP products: per multiplier a
        :func:`~nmaccel.hw.common.dsp.registered_product` (both operands copied into
        registers that feed only the multiplier, then the product register; on the ECP5 all
        three inside one MULT18X18D), then a registered adder tree. Returns ``(sum, its
        register stages)``."""
        level = [registered_product(m, wv, opnd, signed(self.product_bits),
                                    platform=platform, name=f"prod{j}_")
                 for j, (wv, opnd) in enumerate(zip(wvs, opnds))]
        width = self.product_bits
        for lvl in range(self.tree_levels):
            width += 1
            level = sum_pairs(m, level, signed(width), f"sum{lvl + 1}")
        return level[0], REGISTERED_PRODUCT_LATENCY + self.tree_levels

    def _lut_dot(self, m: Module, platform, wvs, opnds) -> tuple:
        """``Σ_j wv_j · opnd_j`` with ``array_lut``: each multiplier's row-pair sums
        (:func:`~nmaccel.hw.common.lutmul.pair_sums`, the first stage of a
        :class:`~nmaccel.hw.common.lutmul.CarryProduct`: in the ECP5's carry chains), then
        the pair sums of equal weight ``4^k`` added over the lanes (no shifts: narrow adders
        and no pass-through bits, which a tree of whole products carries at every level),
        then the ``pairs`` class sums combined with their shifts; on the ECP5 the adds of a
        class's level share one carry chain (:func:`~nmaccel.hw.common.lutmul.
        chained_sum_pairs`). Same stage count as a
        product and a tree of products: ``1 + clog2(pairs)`` and ``clog2(L)``."""
        classes = list(zip(*[pair_sums(m, wv, opnd, platform=platform, name=f"m{j}_")
                             for j, (wv, opnd) in enumerate(zip(wvs, opnds))]))
        width = len(opnds[0]) + 2
        for lvl in range(self.tree_levels):
            width += 1
            classes = [chained_sum_pairs(m, list(c), signed(width), f"c{k}_sum{lvl + 1}",
                                         platform=platform) for k, c in enumerate(classes)]
        level = [c[0] for c in classes]
        out = signed(self.product_bits + self.tree_levels + 1)
        shift, stage = 2, 0
        while len(level) > 1:
            stage += 1
            level = chained_sum_pairs(m, [v << (shift * (i % 2)) for i, v in enumerate(level)],
                                      out, f"comb{stage}", platform=platform)
            shift *= 2
        return level[0], 1 + self.tree_levels + stage

    def elaborate(self, platform) -> Module:
        m = Module()
        L, n, mw = self.lanes, self.n, self.m

        # Stage 1: the activation mux, its output registered per multiplier (the index mux in
        # front of the multiplier was the array's critical path); stage 2: copies of both
        # operands with nothing behind them but the multiplier, which the placer puts next to
        # it (the mux output register sat among the mux's sources, 2.9 ns of routing away from
        # its MULT18X18D); stage 3: the products.
        wvs, opnds = [], []
        for j in range(L):
            sel = Signal(signed(self.config.act_bits), name=f"sel{j}")
            opnd = Signal(signed(self.config.act_bits + 1), name=f"opnd{j}", reset_less=True)
            m.d.sync += opnd.eq(Mux(self.a_unsigned, sel.as_unsigned(), sel))
            base = (j // n) * mw
            with m.Switch(self.w_index[j]):
                for k in range(mw):
                    with m.Case(k):
                        m.d.comb += sel.eq(self.act[base + k])
                with m.Default():     # unreachable for index_bits == clog2(m)
                    m.d.comb += sel.eq(0)
            # The weight register is this PE's own (as plain registers Yosys merges the row's
            # PEs' into one, whose fan-out across the array was the critical path): for DSP
            # products zeroed where this PE's operand is zero, which leaves the product
            # unchanged and makes the register a function of its own; LUT products take a
            # plain copy (:func:`~nmaccel.hw.common.fanout.own_copy`: FFs only, where the
            # zero test cost ~3 LUT4 per multiplier).
            if self.config.array_lut:
                wv = own_copy(m, self.w_value[j], f"wv{j}", platform=platform)
            else:
                wv = Signal(signed(self.config.weight_bits), name=f"wv{j}", reset_less=True)
                m.d.sync += wv.eq(Mux(sel == 0, 0, self.w_value[j]))
            wvs.append(wv)
            opnds.append(opnd)

        # Stages 2 .. : the products and their sum over the lanes.
        dot = self._lut_dot if self.config.array_lut else self._dsp_dot
        total, stages = dot(m, platform, wvs, opnds)
        assert 1 + stages + 1 == self.latency
        # ``valid`` and ``clear`` beside the pipeline: the first stage is this PE's own copy
        # (:func:`~nmaccel.hw.common.fanout.own_copy`), so the stages after it are too. As
        # plain registers Yosys folds every PE's chain into one, whose last stage then
        # enables the accumulators of the whole array.
        valid = own_copy(m, self.valid, "valid_s1", platform=platform, reset=True)
        clear = own_copy(m, self.clear, "clear_s1", platform=platform, reset=True)
        valid = delay_chain(m, valid, stages, "valid_s1", reset_less=False)[-1]
        clear = delay_chain(m, clear, stages, "clear_s1", reset_less=False)[-1]

        # Last stage: accumulate.
        with m.If(valid):
            with m.If(clear):
                m.d.sync += self.acc.eq(total)
            with m.Else():
                m.d.sync += self.acc.eq(self.acc + total)
        with m.Elif(clear):
            m.d.sync += self.acc.eq(0)
        m.d.sync += self.acc_valid.eq(valid)
        return m
