"""Stopping on a signal without losing work: SIGTERM, SIGINT and SIGUSR1 (what Slurm's time limit,
preemption and `scancel` send) only set a flag; at the next step the ranks agree on it (inside the
one small collective every step already makes), every rank checkpoints that step, and the job
exits with STOPPED. A second signal while that checkpoint is written exits at once: checkpoint
files and the manifest are replaced atomically, so the previous complete checkpoint survives.
"""
from __future__ import annotations

import os
import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
STOPPED = 4       # exit status: stopped by a signal, checkpoint written
STOPPED_HARD = 5  # a second signal during that checkpoint: exited at once


class Preempted(Exception):
    """The ranks agreed to stop; the run checkpointed `step`."""

    def __init__(self, step: int, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
        self.step, self.signum = step, signum


class StopSignal:
    """Catches the stop signals of this process while a run trains."""

    def __init__(self):
        self.received = 0       # the signal number, 0 when none
        self.checkpointing = False
        self._previous = {}

    def install(self) -> "StopSignal":
        for s in SIGNALS:
            try:
                self._previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: signals stay with whoever owns them
                pass
        return self

    def agreed(self, signum: int) -> None:
        """The ranks agreed to stop on `signum`, perhaps sent to another rank: count it as this rank's
        first, so that the next signal here, during the stop's checkpoint, is the second."""
        self.received = self.received or signum

    def _handle(self, signum, frame) -> None:
        if self.received and self.checkpointing:
            os._exit(STOPPED_HARD)
        self.received = self.received or signum

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
