"""What a lab is asked to be: hosts, ranks, link rates, racks. Pure: parsing and checks only.

Rates are written as tc writes them, in bits per second with a decimal prefix: `200mbit`,
`1gbit`, `500kbit`, `1.5gbit`. `unlimited` leaves a link unshaped (the veth's own speed).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

MAX_HOSTS = 250        # one /24 subnet, with room to spare
UNITS = {"bit": 1, "kbit": 10 ** 3, "mbit": 10 ** 6, "gbit": 10 ** 9}
RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(bit|kbit|mbit|gbit)", re.IGNORECASE)
MIN_RATE = 8_000       # bits/s; tbf cannot shape meaningfully below about 1 kB/s
MAX_RATE = 100 * 10 ** 9


class LabError(ValueError):
    """Input a lab cannot be built from; the user reads one line and the status is 2."""


def parse_rate(text: str, option: str = "--rate") -> Optional[int]:
    """Bits per second from '200mbit' and the like; None for 'unlimited'."""
    word = str(text).strip()
    if word.lower() == "unlimited":
        return None
    match = RATE.fullmatch(word)
    if match is None:
        raise LabError(f"{option} must be a rate like 200mbit, 1gbit or 500kbit (or unlimited), got '{text}'")
    bits = round(float(match.group(1)) * UNITS[match.group(2).lower()])
    if not MIN_RATE <= bits <= MAX_RATE:
        raise LabError(f"{option} must lie between 8kbit and 100gbit, got '{text}'")
    return bits


def format_rate(bits: Optional[int]) -> str:
    """'200 Mbit/s' for 200_000_000; 'unlimited' for None."""
    if bits is None:
        return "unlimited"
    for unit, scale in (("Gbit/s", 10 ** 9), ("Mbit/s", 10 ** 6), ("kbit/s", 10 ** 3)):
        if bits >= scale:
            return f"{bits / scale:g} {unit}"
    return f"{bits} bit/s"


def whole_number(option: str, text, low: int, high: int) -> int:
    word = str(text).strip()
    if not word.isdigit() or not low <= int(word) <= high:
        raise LabError(f"{option} must be a whole number from {low} to {high}, got '{text}'")
    return int(word)


@dataclass(frozen=True)
class LabSpec:
    """N hosts of R ranks each; every host's NIC runs at `rate` (bits/s, None: unshaped). With
    `group_size` G, consecutive hosts form racks of G (the last one may be smaller) whose uplink
    to the core switch runs at `group_rate`."""

    hosts: int
    ranks_per_host: int
    rate: Optional[int]
    command: Tuple[str, ...]
    group_size: Optional[int] = None
    group_rate: Optional[int] = None

    def __post_init__(self):
        if not self.command:
            raise LabError("no command given; usage: dsgd-lab [options] -- COMMAND [ARG...]")
        if self.group_size is not None and not 1 <= self.group_size <= self.hosts:
            raise LabError(f"--group-size must be from 1 to --hosts ({self.hosts}), got {self.group_size}")

    @property
    def ranks(self) -> int:
        return self.hosts * self.ranks_per_host

    def group_of(self, host: int) -> int:
        """The rack a host sits in (0 for every host when there are no racks)."""
        return host // self.group_size if self.group_size else 0

    @property
    def groups(self) -> int:
        return -(-self.hosts // self.group_size) if self.group_size else 1

    def describe(self) -> str:
        """One line: '4 hosts x 1 rank, 50 Mbit/s per host; racks of 2 hosts, 20 Mbit/s uplinks'."""
        ranks = "rank" if self.ranks_per_host == 1 else "ranks"
        line = f"{self.hosts} hosts x {self.ranks_per_host} {ranks}, {format_rate(self.rate)} per host"
        if self.group_size:
            line += f"; racks of {self.group_size} hosts, {format_rate(self.group_rate)} uplinks"
        return line


def make_spec(hosts, ranks_per_host, rate, command, group_size=None, group_rate=None) -> LabSpec:
    """A LabSpec from command-line text; LabError names the first option that is wrong."""
    n = whole_number("--hosts", hosts, 1, MAX_HOSTS)
    r = whole_number("--ranks-per-host", ranks_per_host, 1, 64)
    if rate is None:
        raise LabError("--rate is required (a rate like 200mbit, or unlimited)")
    link = parse_rate(rate, "--rate")
    if (group_size is None) != (group_rate is None):
        raise LabError("--group-size and --group-rate go together (racks of G hosts joined at RATE)")
    g = None if group_size is None else whole_number("--group-size", group_size, 1, n)
    uplink = None if group_rate is None else parse_rate(group_rate, "--group-rate")
    return LabSpec(hosts=n, ranks_per_host=r, rate=link, command=tuple(command), group_size=g, group_rate=uplink)
