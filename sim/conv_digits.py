"""The digits nets on the conv-engine RTL (``nmaccel sim conv``, the report's conv section):
K test images drawn without replacement from the fixed 360-image test split, layer by layer
with each layer's input being the RTL's own output of the previous layer, compared with the
integer golden model bit for bit, with accuracy (RTL, golden, float), measured vs predicted
cycles per image and PE utilization.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["select_images", "simulate_net"]


def select_images(k: int, seed: int):
    """Indices (sorted) of ``k`` test images drawn without replacement with ``seed``."""
    from nmaccel.model.digits import TEST_IMAGES
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(TEST_IMAGES, size=k, replace=False))


def simulate_net(net: str, cfg, images: int, seed: int = 0, bits: int = 4,
                 simulator: str = "verilator", chunk: int = 60, stall: float = 0.0,
                 gaps: float = 0.0, progress: bool = True, im2col_first: bool = False) -> dict:
    """RTL vs golden vs float on ``images`` digits test images; the result dictionary of
    ``nmaccel sim conv``."""
    from tqdm import tqdm

    from nmaccel.model.conv_nets import build_workload, float_accuracy, run_int_net
    from nmaccel.model.conv_ref import get_exp_cycles
    from nmaccel.model.digits import load_digits_split
    from nmaccel.sim.conv_harness import build, run_net

    if chunk < 1:
        raise ValueError(f"chunk must be a positive integer, not {chunk}")
    split = load_digits_split()
    idx = select_images(images, seed)
    x, y = split.test_images[idx], split.test_labels[idx]
    t0 = time.time()
    wl = build_workload(net, bits=bits, im2col_first=im2col_first)
    golden = run_int_net(wl.qnet, x)
    build(cfg, simulator)
    t1 = time.time()
    logits, counters = [], []
    for s in tqdm(range(0, len(x), chunk), desc=f"RTL {net}", unit="chunk",
                  disable=not progress):
        r = run_net(cfg, wl.qnet, x[s:s + chunk], simulator, seed=seed, stall=stall, gaps=gaps)
        logits.append(r["logits"])
        counters.extend(r["counters"])
    t2 = time.time()
    rtl = np.concatenate(logits)
    pred = [get_exp_cycles(j, cfg) for j in wl.qnet.jobs]
    names = [j.name for j in wl.qnet.jobs]
    measured = np.array([sum(c["cyc_total"] for c in per) for per in counters])
    predicted = sum(p["total"] for p in pred)
    macs = sum(p["macs"] for p in pred)
    pes = cfg.p_out * cfg.p_in
    layers = []
    for li, (name, p) in enumerate(zip(names, pred)):
        m = np.array([per[li]["cyc_total"] for per in counters])
        layers.append({
            "name": name, "mode": wl.qnet.jobs[li].mode, "predicted": p["total"],
            "measured_mean": float(m.mean()), "measured_max": int(m.max()),
            "compute": p["compute"], "load": p["load"], "overhead": p["overhead"],
            "finn_compute": p["compute"],
            "stall_cycles_mean": float(np.mean([per[li]["cyc_stall"] for per in counters])),
            "macs": p["macs"],
            "pe_utilization": p["macs"] / (pes * float(m.mean())),
            "pe_utilization_compute": p["macs"] / p["pe_slots"],
        })
    rtl_pred, gold_pred = rtl.argmax(1), golden.argmax(1)
    result = {
        "net": net, "bits": wl.qnet.bits, "im2col_first": im2col_first,
        "images": int(images), "seed": int(seed),
        "image_indices": idx.tolist(), "simulator": simulator, "config": cfg.to_dict(),
        "stall": stall, "gaps": gaps,
        "verdict": "PASS" if np.array_equal(rtl, golden) else "FAIL",
        "logits_identical": bool(np.array_equal(rtl, golden)),
        "predictions_identical": bool(np.array_equal(rtl_pred, gold_pred)),
        "accuracy": {"rtl": float((rtl_pred == y).mean()),
                     "golden": float((gold_pred == y).mean()),
                     "float": float_accuracy(wl.net, x, y)},
        "cycles_per_image": {"predicted": int(predicted), "measured_mean": float(measured.mean()),
                             "measured_min": int(measured.min()),
                             "measured_max": int(measured.max()),
                             "error": float(abs(measured.mean() - predicted) / predicted)},
        "pe_utilization": macs / (pes * float(measured.mean())),
        "layers": layers,
        "seconds": {"workload": t1 - t0, "rtl": t2 - t1},
        "rtl_cycles_per_second": float(measured.sum() / max(t2 - t1, 1e-9)),
    }
    return result
