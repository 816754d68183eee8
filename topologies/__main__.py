"""Command line: inspect, draw and list topologies.

    python -m topologies list
    python -m topologies show ring 16 --json
    python -m topologies show torus:rows=4,cols=4 16
    python -m topologies show one-peer-exponential 8 --step 2
    python -m topologies draw exponential 8 -o exp8.png

Bad input prints one line "topologies: error: ..." on stderr and exits 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

import numpy as np

from .errors import TopologyError
from .families import FAMILIES, from_spec, build
from .options import parse_option, parse_spec
from .spectra import lambda2
from .topology import Topology

PROG = "topologies"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in our one-line format."""

    def error(self, message: str) -> None:  # type: ignore[override]
        _fail(message)


def _fail(message: str) -> None:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Inspect the mixing matrices of dsgd topologies.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{show,draw,list}")
    commands.add_parser("list", help="families and what they are")
    for name, text in (("show", "print W(t), degrees, lambda2, spectral gap"),
                       ("draw", "render the graph with its edge weights")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("name", help="family or spec, e.g. ring or torus:rows=4,cols=4")
        sub.add_argument("n", type=int, help="number of nodes")
        sub.add_argument("--weights", default=None, help="weight rule (default: the family's)")
        sub.add_argument("--step", type=int, default=0, help="step t of a time-varying family")
        sub.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                         help="family option, repeatable")
        if name == "show":
            sub.add_argument("--json", action="store_true", help="one JSON object on stdout")
        else:
            sub.add_argument("-o", "--output", required=True, help="image file, e.g. ring.png")
    return parser


def _topology(args: argparse.Namespace) -> Topology:
    name, options = parse_spec(args.name)
    for item in args.option:
        key, value = parse_option(item, "--option")
        if key in options:
            raise TopologyError(f"option '{key}' given twice")
        options[key] = value
    if args.weights is not None:
        if "weights" in options:
            raise TopologyError("weights given twice")
        options["weights"] = args.weights
    return build(name, args.n, options.pop("weights", "default"), **options)


def _report(topo: Topology, step: int) -> Dict[str, Any]:
    W = topo.W(step)
    d_in, d_out = topo.degrees(step)
    info = topo.describe()
    info.update(step=step, W=W.tolist(), in_degrees=d_in, out_degrees=d_out,
                lambda2_step=lambda2(W))
    return info


def _show(topo: Topology, step: int, as_json: bool) -> None:
    info = _report(topo, step)
    if as_json:
        print(json.dumps(info))
        return
    print(f"{info['spec']}  n={topo.n}  step={step}  period={topo.period}  weights={topo.weights}")
    with np.printoptions(precision=4, suppress=True, linewidth=10_000, threshold=sys.maxsize):
        print(f"W({step}) =\n{np.asarray(info['W'])}")
    print(f"in-degree  {min(info['in_degrees'])}..{max(info['in_degrees'])}   "
          f"out-degree {min(info['out_degrees'])}..{max(info['out_degrees'])}")
    if topo.time_varying:
        print(f"lambda2(W({step}))  = {info['lambda2_step']:.12g}")
        print(f"lambda2 per step over one period = {info['lambda2']:.12g}")
    else:
        print(f"lambda2      = {info['lambda2']:.12g}")
    print(f"spectral gap = {info['spectral_gap']:.12g}")


def _list() -> None:
    width = max(map(len, FAMILIES))
    for family in FAMILIES.values():
        options = f" [{', '.join(family.options)}]" if family.options else ""
        print(f"{family.name:<{width}}  {family.summary}{options}")


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of `python -m topologies` and `dsgd-topologies`."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            _list()
        elif args.command == "show":
            _show(_topology(args), args.step, args.json)
        else:
            from .plot import draw
            draw(_topology(args), args.output, args.step)
            print(f"wrote {args.output}")
    except TopologyError as exc:
        _fail(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
