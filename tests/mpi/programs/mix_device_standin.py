"""The device path of the MPI backend, on CPU: what MPI is handed, and when, for GPU memory.

    mpirun -np 3 python -m mpi4py mix_device_standin.py

A stand-in communicator treats every tensor that is not one of its host staging buffers as
device memory and records each stream synchronization, each MPI call (and whether it was
given device or host memory) and each weighted sum the mixer runs. The rules checked:
  - MPI never sees device memory that kernels may still write or read: a synchronization
    comes after the last kernel and before every MPI call on device memory, so a receive
    buffer the previous step's sum read is not reposted before that sum is done;
  - a non-blocking collective (overlap with global averaging, or any comm timeout) never gets
    device memory unless the library is declared to support it (device_nbc);
  - the values are still W @ X.
"""
import numpy as np
import torch
from mpi4py import MPI

import topologies
from dsgd.comm import Mixer
from dsgd.comm.mpi import MPICommunicator

MPI_CALLS = ("Isend", "Irecv", "Allreduce", "Iallreduce")


class RecordingComm:
    """An mpi4py communicator that notes each data-moving call and the memory it was given."""

    def __init__(self, comm, trace, is_host):
        self._comm, self._trace, self._is_host = comm, trace, is_host

    def __getattr__(self, name):
        attr = getattr(self._comm, name)
        if name not in MPI_CALLS:
            return attr

        def call(*args, **kwargs):
            buf = args[1] if name in ("Allreduce", "Iallreduce") else args[0]
            ptr = buf.__array_interface__["data"][0]
            self._trace.append((name, "host" if self._is_host(ptr) else "device"))
            return attr(*args, **kwargs)
        return call


class StandInDevice(MPICommunicator):
    def __init__(self, trace, device_nbc):
        super().__init__(cuda_aware=True, device_nbc=device_nbc)
        self.trace = trace
        self.comm = RecordingComm(self.comm, trace, lambda p: p in self.staging.host_ptrs)

    def _on_device(self, t):
        return t.data_ptr() not in self.staging.host_ptrs

    def _synchronize(self, t):
        self.trace.append(("sync", None))


def check_order(trace, device_nbc):
    ready = False  # a sync since the last kernel
    for event, memory in trace:
        if event == "sync":
            ready = True
        elif event == "kernel":
            ready = False
        elif memory == "device":
            assert ready, f"{event} on device memory without a synchronization after the last kernel: {trace}"
            assert event != "Iallreduce" or device_nbc, f"non-blocking collective given device memory: {trace}"


def main():
    world = MPI.COMM_WORLD
    n = world.size
    rng = np.random.default_rng(0)
    for device_nbc in (False, True):
        trace = []
        comm = StandInDevice(trace, device_nbc)
        mixer = Mixer(comm, 1)
        combine = mixer._combine

        def recorded_combine(*args):
            trace.append(("kernel", None))  # the weighted sum: device kernels reading the receive buffer
            return combine(*args)
        mixer._combine = recorded_combine
        topo = topologies.from_spec("one-peer-exponential", n)
        for t, W in enumerate([topo.W(0), topo.W(1), np.full((n, n), 1.0 / n), topologies.from_spec("ring", n).W(0)]):
            X = [rng.standard_normal((n, 300)).astype(np.float32) for _ in range(2)]
            bufs = [torch.from_numpy(x[world.rank:world.rank + 1].copy()) for x in X]
            for blocking in (True, False):
                work = [b.clone() for b in bufs]
                pending = mixer.start(work, W, blocking=blocking)
                trace.append(("kernel", None))  # the next forward/backward, launched meanwhile
                pending.wait()
                for got, x in zip(work, X):
                    np.testing.assert_allclose(got.numpy(), (W @ x.astype(np.float64))[world.rank:world.rank + 1],
                                               rtol=2e-6, atol=2e-6)
        check_order(trace, device_nbc)
        seen = {e for e in trace}
        assert ("Iallreduce", "device" if device_nbc else "host") in seen, seen
        assert ("Allreduce", "device") in seen and ("Irecv", "device") in seen, seen
    world.Barrier()
    if world.rank == 0:
        print(f"device stand-in ok on {n} ranks")


if __name__ == "__main__":
    main()
