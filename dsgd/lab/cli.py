"""The lab's command line: build the network, run the job, report, take it all down again.

    python -m dsgd.lab --hosts N [--ranks-per-host R] --rate RATE [--group-size G --group-rate RATE]
                       [--json FILE] [--run DIR] [--timeout S] [--measure] [--dry-run] -- COMMAND [ARG...]

Exit status: the job's own; 2 for bad input; 3 where this machine cannot build a lab; 128 + N
when signal N stopped the lab before or after its job.
"""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from dsgd.lab import counters, report
from dsgd.lab.job import hostfile_text, job_line, run_job
from dsgd.lab.measure import measure_rate
from dsgd.lab.network import STOPS, Layout, LabUnavailable, Network, sweep_stale
from dsgd.lab.preflight import why_not_here
from dsgd.lab.spec import LabError, format_rate, make_spec
from dsgd.launch_policy import UsageError


class Stopped(Exception):
    """A stop signal outside the job; the lab is taken down and the status is 128 + the signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise LabError(message)


def parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, usage=f"{prog} [options] -- COMMAND [ARG...]", epilog="See docs/lab.md.",
                description="Run a dsgd command as one MPI job on N network-namespace hosts whose links are "
                            "limited to a given rate, and report the bytes the kernel counted beside dsgd's.")
    add = p.add_argument
    add("--hosts", default="2", metavar="N", help="namespace hosts (default 2)")
    add("--ranks-per-host", default="1", metavar="R", help="MPI ranks on each host (default 1)")
    add("--rate", metavar="RATE", help="each host's link, both ways: 200mbit, 1gbit, ... or unlimited (required)")
    add("--group-size", metavar="G", help="racks of G consecutive hosts, joined through a core switch")
    add("--group-rate", metavar="RATE", help="each rack's uplink to the core switch, both ways")
    add("--json", metavar="FILE", help="write the report as JSON too")
    add("--run", metavar="DIR", help="dsgd run directory to read (default: the command's --out)")
    add("--timeout", type=float, metavar="S", help="stop the job after S seconds (as Ctrl-C would)")
    add("--measure", action="store_true", help="time a bulk transfer h0 -> h1 before the job")
    add("--dry-run", action="store_true", help="print the ip, tc and mpirun commands; run nothing")
    return p


def parse(argv: Sequence[str], prog: str):
    """(LabSpec, options) from the command line; LabError for anything wrong with it."""
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    options, command = argv[:cut], argv[cut + 1:]
    opts, unknown = parser(prog).parse_known_args(options)
    if unknown:
        stray = next((w for w in unknown if w.startswith("-")), None)
        raise LabError(f"unknown option {stray}" if stray else f"'{unknown[0]}' is not an option: the command "
                       f"goes after --, as in dsgd-lab [options] -- COMMAND")
    if opts.timeout is not None and not 0 < opts.timeout <= 7 * 24 * 3600:
        raise LabError(f"--timeout must be seconds > 0, got {opts.timeout}")
    spec = make_spec(opts.hosts, opts.ranks_per_host, opts.rate, command, opts.group_size, opts.group_rate)
    if opts.measure and spec.hosts < 2:
        raise LabError("--measure needs at least 2 hosts")
    return spec, opts


def main(argv: Optional[Sequence[str]] = None, prog: str = "python -m dsgd.lab") -> int:
    """Parse, check the machine, then build, run, report and take down; each failure is one line."""
    try:
        spec, opts = parse(sys.argv[1:] if argv is None else argv, prog)
    except LabError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    reason = None if opts.dry_run else why_not_here()
    if reason:
        print(f"{prog}: cannot run here: {reason}", file=sys.stderr)
        return 3
    previous = {sig: signal.signal(sig, _stop) for sig in STOPS}
    try:
        with tempfile.TemporaryDirectory(prefix="dsgd-lab-") as tmp:
            layout = Layout(spec)
            hostfile = Path(tmp) / "hostfile"
            hostfile.write_text(hostfile_text(layout))
            line = job_line(layout, str(hostfile))
            if opts.dry_run:
                return _dry_run(layout, line, str(hostfile))
            return _run(layout, line, opts, prog)
    except (LabError, UsageError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except LabUnavailable as e:
        print(f"{prog}: cannot run here: {e}", file=sys.stderr)
        return 3
    except Stopped as e:
        print(f"{prog}: stopped by {e}; the lab's namespaces are removed", file=sys.stderr)
        return 128 + e.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(signum, _frame):
    raise Stopped(signum)


def _dry_run(layout: Layout, line: list, hostfile: str) -> int:
    """The commands that would build the lab and run the job, the hostfile's lines as comments."""
    print("\n".join(shlex.join(cmd) for cmd in layout.setup_commands()))
    print("".join(f"# HOSTFILE: {row}\n" for row in hostfile_text(layout).splitlines()), end="")
    print(shlex.join(line).replace(hostfile, "HOSTFILE"))
    return 0


def _run(layout: Layout, line: list, opts, prog: str) -> int:
    spec = layout.spec
    stale = sweep_stale()
    if stale:
        print(f"{prog}: removed {len(stale)} namespaces left by labs that were killed", file=sys.stderr)
    with Network(layout):
        print(f"{prog}: {spec.describe()}; hosts {layout.hosts[0].namespace} .. {layout.hosts[-1].namespace}",
              flush=True)
        measured = _measure(layout, prog) if opts.measure else None
        print(f"{prog}: {shlex.join(line)}", flush=True)
        ports = layout.nics() + layout.uplinks()
        started, before = time.time(), counters.snapshot(ports)
        status, wall_s = run_job(line, opts.timeout, prog)
        moved = counters.moved(before, counters.snapshot(ports))
    run_dir = Path(opts.run) if opts.run else report.run_dir_of(spec.command)
    run = report.read_run(run_dir, started) if run_dir else None
    result = {**report.build(layout, moved, status, wall_s, line, run), "measured_bits_per_s": measured}
    print(report.table(result, prog), flush=True)
    if opts.json:
        report.write_json(result, Path(opts.json))
    return status


def _measure(layout: Layout, prog: str) -> float:
    """Bits/s of a bulk transfer from h0 to h1, sized to take about half a second at the rate."""
    h0, h1 = layout.hosts[:2]
    rate = min(r for r in (layout.spec.rate, layout.spec.group_rate, 10 ** 9) if r)
    measured = measure_rate(h0.namespace, h1.namespace, h1.address, max(1 << 20, rate // 16))
    print(f"{prog}: measured h0 -> h1: {measured / 1e6:.1f} Mbit/s of TCP payload "
          f"(link {format_rate(layout.spec.rate)})", flush=True)
    return measured
