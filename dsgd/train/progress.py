"""The progress line of rank 0: on a terminal one line redrawn in place with a bar, the rate and the
time left; elsewhere (CI logs, Slurm output files) a plain line per report, which reads well in a file."""
from __future__ import annotations

import os
import sys

BAR = 24


def clock(seconds: float | None) -> str:
    """1:05:09, 4:07, or ? when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _is_terminal(path: str) -> bool:
    return path.startswith(("/dev/pts/", "/dev/tty")) or path == "/dev/console"


def launcher_writes_to_terminal() -> bool:
    """Whether this process's stdout, a terminal, ends on one a person watches.

    Open MPI's mpirun gives every rank a pseudo-terminal of its own, whatever mpirun itself writes
    to (a file, a pipe), so the rank's own isatty() says nothing there. What does is the stdout of
    the process that started this one (mpirun, a shell, a script), read from /proc; without /proc,
    Open MPI's ranks get plain lines and other processes trust their isatty().
    """
    try:
        return _is_terminal(os.readlink(f"/proc/{os.getppid()}/fd/1"))
    except OSError:
        return "OMPI_COMM_WORLD_SIZE" not in os.environ


class Progress:
    """Writes to `stream` (default: sys.stdout as it is when called, so redirections are honoured);
    a stream given here that says it is a terminal is taken at its word."""

    def __init__(self, stream=None):
        self._stream = stream
        self._open = 0  # length of the line drawn in place and not yet ended, 0 when none

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    def live(self) -> bool:
        """Draw in place? Only on a terminal; for this process's own stdout, only if it reaches one."""
        isatty = getattr(self.stream, "isatty", None)
        try:
            if not (isatty and isatty()):
                return False
        except ValueError:  # a closed stream
            return False
        return self._stream is not None or launcher_writes_to_terminal()

    def show(self, step: int, total: int, loss: float, acc: float, H: int, samples_per_s: float,
             eta_s: float | None) -> None:
        frac = step / max(1, total)
        stats = f"loss {loss:.4f}  acc {acc:.3f}  H {H}  {samples_per_s:,.0f} samples/s"
        out = self.stream
        if not self.live():
            out.write(f"step {step}/{total} ({100 * frac:5.1f}%)  {stats}  ETA {clock(eta_s)}\n")
            out.flush()
            return
        filled = int(BAR * frac)
        line = f"step {step}/{total} [{'#' * filled}{'.' * (BAR - filled)}] {100 * frac:5.1f}%  {stats}  " \
               f"ETA {clock(eta_s)}"
        out.write("\r" + line + " " * max(0, self._open - len(line)))  # blank what a longer line left
        self._open = len(line)
        if step >= total:
            self.end_line()
        out.flush()

    def end_line(self) -> None:
        """End a line drawn in place, so the next output starts on its own line."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = 0
