"""The block lists the per-block studies (sta_resources, block_fmax) share."""

import pytest
from amaranth.hdl import Fragment
from amaranth.lib import wiring

from nmaccel.boards.blocks import conv_blocks, lean_sta_blocks, sta_blocks
from nmaccel.spec.config import conv_preset, sta_preset


@pytest.mark.parametrize("blocks,cfg", [(sta_blocks, sta_preset("tiny")),
                                        (conv_blocks, conv_preset("small")),
                                        (lean_sta_blocks, sta_preset("icebreaker"))])
def test_every_block_elaborates(blocks, cfg):
    rows = blocks(cfg)
    names = [name for name, *_ in rows]
    assert len(set(names)) == len(names)
    for name, count, make, what in rows:
        comp = make()
        assert isinstance(comp, wiring.Component) and type(comp).__name__ == name
        assert count >= 1 and what
        Fragment.get(comp, None)


def test_blocks_reject_the_other_config():
    with pytest.raises(TypeError, match="cfg must be a StaConfig, not ConvConfig"):
        sta_blocks(conv_preset("small"))
    with pytest.raises(TypeError, match="cfg must be a ConvConfig, not StaConfig"):
        conv_blocks(sta_preset("tiny"))


def test_blocks_are_built_as_their_core_builds_them():
    """The shared post-processing of the icebreaker conv preset has out_lanes lanes, not
    p_out (a block list that built all p_out lanes measured a block the engine does not have)."""
    cfg = conv_preset("icebreaker")
    assert cfg.out_lanes < cfg.p_out
    post = {name: make for name, _, make, _ in conv_blocks(cfg)}["PostProcess"]()
    assert post.lanes == cfg.out_lanes
    Fragment.get(post, None)
