"""``stream_put`` / ``stream_get`` for Amaranth ``lib.stream`` interfaces in ``amaranth.sim``
testbenches (``async def tb(ctx)``), with optional random idle cycles and back-pressure."""

from __future__ import annotations

import random

__all__ = ["stream_get", "stream_put"]


async def stream_put(ctx, stream, payload, rng: random.Random | None = None,
                     idle: float = 0.0) -> None:
    """Transfer one ``payload`` into ``stream`` (a ``stream.Interface`` the DUT reads from).

    With ``idle > 0`` the source waits a random number of idle cycles first (each with
    probability ``idle``). Returns after the clock edge that completes the transfer.
    """
    if rng is not None and idle > 0:
        while rng.random() < idle:
            await ctx.tick()
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, rng: random.Random | None = None,
                     backpressure: float = 0.0):
    """Receive one payload from ``stream`` (a ``stream.Interface`` the DUT drives).

    With ``backpressure > 0`` the sink keeps ``ready`` low for random cycles first.
    """
    if rng is not None and backpressure > 0:
        while rng.random() < backpressure:
            await ctx.tick()
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload
