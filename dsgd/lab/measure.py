"""A bulk TCP transfer from one lab host to another, timed by the receiver: the rate a link really
carries, to hold beside the rate it was given.

    python dsgd/lab/measure.py receive ADDRESS PORT      (prints "ready", then the bits/s it got)
    python dsgd/lab/measure.py send ADDRESS PORT BYTES

The receiver times from its first byte to the last, so connection setup and the first bytes the
bucket lets through at once weigh little; what it counts is TCP payload (headers are not counted,
about 4% of what the link carries).
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

CHUNK = 1 << 16
PORT = 5201


def receive(address: str, port: int) -> float:
    with socket.create_server((address, port)) as server:
        print("ready", flush=True)
        connection, _ = server.accept()
        with connection:
            got, first = 0, None
            while True:
                data = connection.recv(CHUNK)
                if not data:
                    break
                first = first or time.perf_counter()
                got += len(data)
            last = time.perf_counter()
    return 8 * got / (last - first) if first and last > first else 0.0


def send(address: str, port: int, nbytes: int) -> None:
    block = b"\0" * CHUNK
    with socket.create_connection((address, port), timeout=60) as connection:
        left = nbytes
        while left > 0:
            connection.sendall(block[:min(left, CHUNK)])
            left -= CHUNK


def measure_rate(source_namespace: str, target_namespace: str, target_address: str, nbytes: int,
                 timeout: float = 60.0) -> float:
    """Bits per second that NBYTES sent from SOURCE to TARGET (a namespace and its address) arrived at."""
    program = [sys.executable, "-I", str(Path(__file__).resolve())]
    receiver = subprocess.Popen(["ip", "netns", "exec", target_namespace, *program, "receive", target_address,
                                 str(PORT)], stdout=subprocess.PIPE, text=True)
    try:
        if receiver.stdout.readline().strip() != "ready":
            raise RuntimeError("the receiving end of the transfer did not start")
        subprocess.run(["ip", "netns", "exec", source_namespace, *program, "send", target_address, str(PORT),
                        str(nbytes)], check=True, timeout=timeout)
        out, _ = receiver.communicate(timeout=timeout)
        return float(out.strip())
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()


if __name__ == "__main__":
    role, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if role == "receive":
        print(receive(address, port), flush=True)
    else:
        send(address, port, int(sys.argv[4]))
