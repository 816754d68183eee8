"""Progress: a bar redrawn in place on a terminal, plain lines in files (CI logs, Slurm output)."""
import io

import pytest

from dsgd.train.metrics import RunLog
from dsgd.train.progress import Progress, clock


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_one_line_redrawn_with_bar_rate_and_time_left():
    term = Terminal()
    p = Progress(term)
    p.show(10, 40, 1.23456, 0.5, 4, 1234.4, 95)
    p.show(20, 40, 0.9, 0.6, 4, 1300, 40)
    text = term.getvalue()
    assert "\n" not in text and text.count("\r") == 2
    last = text.split("\r")[-1]
    assert last.startswith("step 20/40 [############............]  50.0%  loss 0.9000  acc 0.600  H 4")
    assert "1,300 samples/s" in last and last.endswith("ETA 0:40")
    assert text.split("\r")[1].endswith("ETA 1:35")
    p.show(40, 40, 0.5, 0.8, 4, 1300, 0)
    assert term.getvalue().endswith("[########################] 100.0%  loss 0.5000  acc 0.800  H 4  1,300 samples/s"
                                    "  ETA 0:00\n")  # the finished bar ends its line


def test_a_shorter_redraw_blanks_what_the_longer_line_left():
    term = Terminal()
    p = Progress(term)
    p.show(1, 9, 1.0, 0.5, 1, 123456789, 3725)
    first = len(term.getvalue()) - 1
    p.show(2, 9, 1.0, 0.5, 1, 1, 1)
    second = term.getvalue().split("\r")[-1]
    assert len(second) == first and second.endswith(" ")


def test_a_file_gets_plain_lines():
    log = io.StringIO()  # isatty() is False, as for CI logs and Slurm output files
    p = Progress(log)
    p.show(10, 40, 1.23456, 0.5, 4, 1234.4, 3725)
    p.show(20, 40, 0.9, 0.6, 4, 1300, None)
    assert log.getvalue().splitlines() == [
        "step 10/40 ( 25.0%)  loss 1.2346  acc 0.500  H 4  1,234 samples/s  ETA 1:02:05",
        "step 20/40 ( 50.0%)  loss 0.9000  acc 0.600  H 4  1,300 samples/s  ETA ?"]
    assert "\r" not in log.getvalue()


def test_other_output_starts_on_its_own_line_after_a_bar(tmp_path):
    term = Terminal()
    log = RunLog(tmp_path, 0, tensorboard=False, stream=term)
    log.progress(5, 10, 1.0, 0.5, 1, 100.0, 5.0)
    log.info("eval step 5")
    log.progress(6, 10, 1.0, 0.5, 1, 100.0, 4.0)
    log.close()
    lines = term.getvalue().split("\n")
    assert lines[0].startswith("\rstep 5/10 [")
    assert lines[1].endswith("] eval step 5")
    assert lines[2].startswith("\rstep 6/10 [") and lines[3] == ""  # close() ends the bar's line
    assert "step 5 loss 1.0000" in (tmp_path / "logs" / "rank0.log").read_text()


@pytest.mark.parametrize("seconds, shown", [(0, "0:00"), (59.6, "1:00"), (3725, "1:02:05"), (None, "?"),
                                            (float("nan"), "?")])
def test_time_left_reads_as_a_clock(seconds, shown):
    assert clock(seconds) == shown


@pytest.mark.parametrize("launcher_stdout, ompi, live", [
    ("/dev/pts/3", False, True),            # a shell or mpirun in a terminal
    ("/work/slurm-123.out", True, False),   # mpirun > file: Open MPI still gives the rank a terminal
    ("pipe:[4711]", True, False),           # mpirun | tee, or a CI runner
    (OSError, True, False),                 # no /proc: under Open MPI, plain lines
    (OSError, False, True),                 # no /proc otherwise: the process's own isatty()
])
def test_own_stdout_draws_in_place_only_where_the_launcher_writes_to_a_terminal(monkeypatch, launcher_stdout,
                                                                                ompi, live):
    import os

    from dsgd.train import progress

    def readlink(path):
        assert path == f"/proc/{os.getppid()}/fd/1"
        if launcher_stdout is OSError:
            raise FileNotFoundError(path)
        return launcher_stdout

    monkeypatch.setattr(progress.os, "readlink", readlink)
    if ompi:
        monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    else:
        monkeypatch.delenv("OMPI_COMM_WORLD_SIZE", raising=False)
    monkeypatch.setattr(progress.sys, "stdout", Terminal())  # this process's stdout is a terminal
    assert Progress().live() is live
