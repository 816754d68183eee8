"""partition.json and partition.png in the run directory: the class mix each worker trains on."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_partition(out: Path, spec: str, histogram: np.ndarray, class_names=None) -> str | None:
    """Write the workers x classes counts as JSON and, when matplotlib is there, a heat map.

    Returns a line for the log when the PNG could not be drawn, else None.
    """
    hist = np.asarray(histogram, dtype=np.int64)
    sizes = hist.sum(axis=1)
    doc = {"partition": spec, "workers": int(hist.shape[0]), "classes": int(hist.shape[1]),
           "counts": hist.tolist(), "part_sizes": sizes.tolist()}
    (out / "partition.json").write_text(json.dumps(doc, indent=1) + "\n")
    try:  # the Agg canvas directly: no pyplot, no global backend switch
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "matplotlib is not installed: wrote partition.json but no partition.png"
    n, c = hist.shape
    # each row as fractions of its worker's samples, so small and large parts read alike
    share = hist / np.maximum(sizes, 1)[:, None]
    fig = Figure(figsize=(min(12, 2 + 0.5 * c), min(12, 1.5 + 0.3 * n)))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(share, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xlabel("class")
    ax.set_ylabel("worker (part size)" if n <= 32 else "worker")
    ax.set_title(f"{spec}: share of each worker's samples per class")
    ax.set_xticks(range(c), class_names if class_names is not None else range(c))
    if n <= 32:
        ax.set_yticks(range(n), [f"{i} ({s})" for i, s in enumerate(sizes)])
    fig.colorbar(im, ax=ax, label="share of the worker's part")
    fig.tight_layout()
    fig.savefig(out / "partition.png", dpi=100)
    return None
