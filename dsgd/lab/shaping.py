"""A link's speed limit: the kernel's token-bucket filter (tc-tbf) on the sending side of an interface.

A veth pair has no speed of its own; a tbf qdisc on each end limits what that end sends, so two
qdiscs make a full-duplex link of the given rate. There is no `netem` in the kernels this was
built on, so only bandwidth is modelled: no added delay, no loss.
"""
from __future__ import annotations

from typing import Optional

MIN_BURST = 64 * 1024      # bytes: one full-size GSO packet fits in the bucket without being split
BURST_SECONDS = 0.004      # bucket depth at high rates: 4 ms of traffic (500 kB at 1 Gbit/s)
QUEUE_LATENCY = "50ms"     # longest a packet may wait in the queue before tbf drops it


def burst_bytes(rate: int) -> int:
    """Bucket size for RATE bits/s: deep enough that the rate is reached, small enough that a
    transfer of a megabyte or more is held to the rate (the burst is about 1% of it at 50 Mbit/s)."""
    return max(MIN_BURST, int(rate / 8 * BURST_SECONDS))


def tbf_command(namespace: str, device: str, rate: Optional[int]) -> Optional[list]:
    """The tc argv that limits what DEVICE in NAMESPACE sends to RATE bits/s; None when unlimited."""
    if rate is None:
        return None
    return ["tc", "-n", namespace, "qdisc", "replace", "dev", device, "root", "tbf",
            "rate", f"{rate}bit", "burst", str(burst_bytes(rate)), "latency", QUEUE_LATENCY]
