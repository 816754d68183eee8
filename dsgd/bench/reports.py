"""What the benchmarks that run under MPI (mix, agree, peers, hand, seam) report, computed from what they measured.

Pure functions: no MPI, no clock. They live apart from the measuring code because those modules
import mpi4py at the top, which starts MPI; here, tests check the arithmetic of every report (medians,
ratios, byte counts, which topologies are skipped and why) on recorded measurements, without ranks.
"""
from __future__ import annotations

import numpy as np

import topologies
from dsgd.comm import classify

# ---------------------------------------------------------------------------------------------- mix

IDENTITY = "identity"  # not a family of `topologies`: W = I, a step that must cost nothing


class Identity:
    """W = I on n nodes, shaped like a static topologies.Topology."""

    time_varying, period = False, 1

    def __init__(self, n: int):
        self._W = np.eye(n)

    def W(self, t: int = 0) -> np.ndarray:
        return self._W


def in_peers(W: np.ndarray, rank: int) -> list[int]:
    return [int(j) for j in np.flatnonzero(W[rank] != 0) if j != rank]


def out_peers(W: np.ndarray, rank: int) -> list[int]:
    return [int(j) for j in np.flatnonzero(W[:, rank] != 0) if j != rank]


def bytes_sent(W: np.ndarray, rank: int, buffer_bytes: int) -> int:
    """Bytes `rank` hands to the network for one step with W (see dsgd.bench.mix.NOTES)."""
    kind = classify(W)
    if kind == "identity":
        return 0
    if kind == "average":
        return buffer_bytes
    return len(out_peers(W, rank)) * buffer_bytes


def resolve(spec: str, n: int):
    """(topology, None) for `spec` on n ranks, or (None, why it is not defined there)."""
    if spec == IDENTITY:
        return Identity(n), None
    try:
        return topologies.from_spec(spec, n), None
    except topologies.TopologyError as e:
        return None, str(e)


def mix_topologies(specs: list[str], n: int) -> tuple[list, list[dict], list[str]]:
    """The (spec, topology) pairs to measure on n ranks, in the order given; the others as skipped
    entries {topology, reason}, each with a note that names it, so a report says why it lacks one."""
    measured, skipped, notes = [], [], []
    for spec in specs:
        topo, why = resolve(spec, n)
        if topo is None:
            skipped.append({"topology": spec, "reason": why})
            notes.append(f"skipped {spec}: {why}")
        else:
            measured.append((spec, topo))
    return measured, skipped, notes


def mix_row(kind: str, numel: int, times: np.ndarray, sent: float, repeats: int) -> dict:
    """One (topology, numel) result of `mix`. times: (repeats, 2) seconds of the dsgd and the raw step
    per timed repetition, max over ranks; sent: bytes handed to the network over those repetitions,
    max over ranks."""
    dsgd_s, raw_s = (float(v) for v in np.median(times, axis=0))
    per_step = sent / repeats
    return {"kind": kind, "numel": numel, "dsgd_s": dsgd_s, "raw_s": raw_s,
            "ratio": dsgd_s / raw_s if raw_s > 0 else None,
            "gbps": per_step / dsgd_s / 1e9 if dsgd_s > 0 else None,
            "bytes_sent_per_rank": int(round(per_step)), "repeats": repeats}


# -------------------------------------------------------------------------------------------- agree

def agree_topology(world_size: int) -> str:
    return "ring" if world_size >= 3 else "complete"  # a ring needs 3 nodes


def agree_arms(every: int) -> list[str]:
    return ["agreed", "none", f"every-{every}", "overlapped"]


def agree_row(model: str, topology: str, names: list[str], times: np.ndarray, in_step: np.ndarray,
              alone: np.ndarray, window: int) -> dict:
    """One model's result of `agree`, from its timed windows (warmup removed, max over ranks):
    times (windows, arms) seconds per window of each arm, in_step (windows,) seconds inside the
    agreement per step of the agreed arm, alone (repetitions,) seconds of one agreement alone."""
    step_s = {name: float(np.median(times[:, j])) / window for j, name in enumerate(names)}
    none = times[:, names.index("none")]
    slowdown, quartiles = {}, {}
    for j, name in enumerate(names):
        if name != "none":
            paired = times[:, j] / none
            slowdown[name] = float(np.median(paired))
            quartiles[name] = [float(q) for q in np.percentile(paired, [25, 75])]
    agree_s, agree_in_step_s = float(np.median(alone)), float(np.median(in_step))
    return {"model": model, "topology": topology, "step_s": step_s,
            "agree_s": agree_s, "agree_in_step_s": agree_in_step_s,
            "agree_ratio": agree_s / step_s["none"], "agree_in_step_ratio": agree_in_step_s / step_s["agreed"],
            "slowdown": slowdown, "slowdown_quartiles": quartiles}


# -------------------------------------------------------------------------------------------- peers

PEERS_SIDES = ("dsgd-local-mpi", "dsgd-local-torch", "torch-averager", "dsgd-csgd-mpi", "dsgd-csgd-torch",
               "torch-ddp", "dsgd-csgd-fp16-mpi", "dsgd-csgd-fp16-half-mpi", "dsgd-csgd-fp16-half-torch",
               "torch-ddp-fp16", "dsgd-csgd-powersgd-mpi")  # turn order
PEERS_COMPARISONS = [  # (what, dsgd side, PyTorch side, target ratio)
    ("local SGD", "dsgd-local-mpi", "torch-averager", 1.0),
    ("local SGD", "dsgd-local-torch", "torch-averager", 1.0),
    ("C-SGD", "dsgd-csgd-mpi", "torch-ddp", 1.1),
    ("C-SGD", "dsgd-csgd-torch", "torch-ddp", 1.1),
    ("C-SGD fp16", "dsgd-csgd-fp16-mpi", "torch-ddp-fp16", 1.1),
    ("C-SGD fp16, sums in half precision", "dsgd-csgd-fp16-half-mpi", "torch-ddp-fp16", 1.1),
    ("C-SGD fp16, sums in half precision", "dsgd-csgd-fp16-half-torch", "torch-ddp-fp16", 1.1),
    ("C-SGD PowerSGD rank 2 vs dense", "dsgd-csgd-powersgd-mpi", "torch-ddp", 1.1),
]


def peers_results(names: list[str], times: np.ndarray, world_size: int, batch_size: int, local_steps: int,
                  sent: dict[str, float], steps_done: int) -> list[dict]:
    """One row per side, in turn order. times: (windows, sides) seconds per window of H steps, max over
    ranks; sent: for dsgd's sides, bytes handed to the network over all steps_done steps, mean over workers."""
    results = []
    for j, name in enumerate(names):
        s = float(np.median(times[:, j])) / local_steps
        row = {"name": name, "step_s": s, "samples_per_s": world_size * batch_size / s}
        if name in sent:  # what dsgd handed to the network per step and worker
            row["bytes_per_step"] = sent[name] / steps_done
        results.append(row)
    return results


def peers_comparisons(names: list[str], times: np.ndarray) -> list[dict]:
    """dsgd's side against PyTorch's, paired window by window (run moments apart), per PEERS_COMPARISONS
    whose two sides were timed."""
    column = {name: j for j, name in enumerate(names)}
    comparisons = []
    for what, mine, theirs, target in PEERS_COMPARISONS:
        if mine not in column or theirs not in column:
            continue
        paired = times[:, column[mine]] / times[:, column[theirs]]
        ratio = float(np.median(paired))
        comparisons.append({"what": what, "dsgd": mine, "baseline": theirs, "ratio": ratio,
                            "ratio_quartiles": [float(q) for q in np.percentile(paired, [25, 75])],
                            "target": target, "met": ratio <= target})
    return comparisons


# --------------------------------------------------------------------------------------------- hand

HAND_COLUMNS = ("dsgd", "hand_in_place", "hand_expression", "hand_float64_weights", "exchange",
                "exchange_small_pages", "dsgd_small_pages")
HAND_FORMS = {"in_place": 1, "expression": 2, "float64_weights": 3}


def hand_row(spec: str, kind: str, numel: int, times: np.ndarray, max_rel_diff: float, repeats: int) -> dict:
    """One (topology, numel) result of `hand`. times: (repeats, 7) seconds, max over ranks, in the
    order of HAND_COLUMNS: dsgd's step, the three hand-written steps, the exchange alone on the
    hand-written step's arrays and on 4 KiB-page buffers, dsgd's step on 4 KiB-page buffers. The
    reference (hand_s) is the fastest hand-written step by median; hand_ratio is the ratio of the
    medians, hand_ratio_paired the median (and quartiles) of dsgd's time over the reference's in
    the same repetition."""
    med = [float(v) for v in np.median(times, axis=0)]
    forms = {name: med[i] for name, i in HAND_FORMS.items()}
    form = min(forms, key=forms.get)
    dsgd_s, hand_s, exchange_s, small_s, dsgd_small_s = med[0], forms[form], med[4], med[5], med[6]
    paired = times[:, 0] / times[:, HAND_FORMS[form]]   # repetition by repetition: steady under a drifting load
    return {"topology": spec, "kind": kind, "numel": numel, "dsgd_s": dsgd_s, "hand_s": hand_s, "hand_form": form,
            "hand_forms_s": forms, "exchange_s": exchange_s, "exchange_small_pages_s": small_s,
            "dsgd_small_pages_s": dsgd_small_s, "hand_ratio": dsgd_s / hand_s,
            "hand_ratio_paired": float(np.median(paired)),
            "hand_ratio_quartiles": [float(q) for q in np.percentile(paired, [25, 75])],
            "exchange_ratio": dsgd_s / exchange_s,
            "small_pages_ratio": small_s / exchange_s, "previous_ratio": dsgd_small_s / forms["float64_weights"],
            "max_rel_diff": max_rel_diff, "repeats": repeats}


def profile_shares(stats: dict, top: int) -> list:
    """[file:line(function), share of the total own time] for the `top` functions by own time, from
    pstats.Stats(...).stats: {(path, line, function): (calls, primitive calls, own s, cumulative s, callers)}."""
    total = sum(v[2] for v in stats.values()) or 1.0
    rows = sorted(((v[2], f"{k[0].rsplit('/', 1)[-1]}:{k[1]}({k[2]})") for k, v in stats.items()), reverse=True)
    return [[name, own / total] for own, name in rows[:top]]


# --------------------------------------------------------------------------------------------- seam

def seam_per_worker(row: dict, world_size: int) -> None:
    """Add the *_per_worker_us figures to a `seam` row: the Mixer's time over the n / ranks workers one
    rank serves, numpy's over all n (it mixes them all on one process)."""
    n = row["n"]
    row["mixer_per_worker_us"] = row["mixer_s"] / (n // world_size) * 1e6
    for key in ("numpy_sparse_s", "numpy_dense_s"):
        if key in row:
            row[key[:-2] + "_per_worker_us"] = row[key] / n * 1e6


def seam_growth(results: list[dict]) -> dict:
    """Per topology, how each cost grows from its first n to its last: ratios, 1.0 for flat."""
    by = {}
    for r in results:
        by.setdefault(r["topology"], []).append(r)
    return {spec: {
        "n": [rows[0]["n"], rows[-1]["n"]],
        "cached_step_s": rows[-1]["cached_step_s"] / rows[0]["cached_step_s"],
        "cached_dense_s": rows[-1]["cached_dense_s"] / rows[0]["cached_dense_s"],
        "cold_step_per_worker": (rows[-1]["cold_step_s"] / rows[-1]["workers_per_rank"])
        / (rows[0]["cold_step_s"] / rows[0]["workers_per_rank"]),
        "mixer_per_worker": rows[-1]["mixer_per_worker_us"] / rows[0]["mixer_per_worker_us"],
    } for spec, rows in by.items()}
