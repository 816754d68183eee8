"""Which device a rank trains on, and whether ranks of one node would share a GPU by accident."""
from __future__ import annotations

import socket

import torch

from dsgd.local_rank import local_rank, pick_device as _pick


class DeviceError(ValueError):
    """The device asked for does not exist here, or would be shared without being asked to."""


def pick_device(choice: str = "auto") -> torch.device:
    """cpu; cuda / cuda:N as asked (or DeviceError); auto: the local rank's GPU when there is one."""
    try:
        dev = torch.device(_pick(choice, quiet=True))
    except (RuntimeError, ValueError) as e:
        raise DeviceError(str(e)) from None
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def device_identity(device: torch.device) -> tuple[str, str | None]:
    """(host, GPU uuid) of this rank's device; the uuid is None on CPU."""
    if device.type != "cuda":
        return socket.gethostname(), None
    return socket.gethostname(), str(torch.cuda.get_device_properties(device).uuid)


def shared_gpus(identities: list[tuple[str, str | None]]) -> dict[tuple[str, str], list[int]]:
    """GPUs (host, uuid) that more than one rank would use, with those ranks. Pure."""
    users: dict[tuple[str, str], list[int]] = {}
    for rank, (host, uuid) in enumerate(identities):
        if uuid is not None:
            users.setdefault((host, uuid), []).append(rank)
    return {gpu: ranks for gpu, ranks in users.items() if len(ranks) > 1}


def check_gpu_sharing(identities: list[tuple[str, str | None]], allow: bool) -> None:
    """Refuse, in one line, ranks that would share a GPU unless the user asked for it (--share-gpus)."""
    shared = shared_gpus(identities)
    if shared and not allow:
        (host, _), ranks = next(iter(shared.items()))
        raise DeviceError(f"ranks {', '.join(map(str, ranks))} on {host} would share one GPU "
                          f"({sum(len(r) for r in shared.values())} ranks on {len(shared)} GPU(s)): start at most "
                          f"one rank per visible GPU, or pass --share-gpus true")


__all__ = ["DeviceError", "check_gpu_sharing", "device_identity", "local_rank", "pick_device", "shared_gpus"]
