"""The kernel's own count of the bytes each lab interface sent and received (`ip -s link`).

Read from outside the namespaces (`ip -n`), before and after the job; the difference is what the
job moved, every header and every Open MPI control message included.
"""
from __future__ import annotations

import json
import subprocess
from typing import Dict, Iterable, Tuple

from dsgd.lab.network import Port


def port_bytes(port: Port) -> Tuple[int, int]:
    """(bytes sent, bytes received) by PORT's interface since it was created."""
    out = subprocess.run(["ip", "-n", port.namespace, "-j", "-s", "link", "show", "dev", port.device],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    stats = json.loads(out)[0]["stats64"]
    return int(stats["tx"]["bytes"]), int(stats["rx"]["bytes"])


def snapshot(ports: Iterable[Port]) -> Dict[str, Tuple[int, int]]:
    return {port.label: port_bytes(port) for port in ports}


def moved(before: Dict[str, Tuple[int, int]], after: Dict[str, Tuple[int, int]]) -> Dict[str, Tuple[int, int]]:
    """Bytes sent and received by each port between two snapshots."""
    return {label: (after[label][0] - sent, after[label][1] - received)
            for label, (sent, received) in before.items()}
