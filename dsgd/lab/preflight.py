"""Can a lab run on this machine? The reason it cannot, in one line, before anything is created.

What is only known by trying (may namespaces be created, is tbf in the kernel) is reported by
`dsgd.lab.network` as it builds the lab, in the same one-line form.
"""
from __future__ import annotations

import os
import shutil
from typing import Mapping, Optional

TOOLS = (("ip", "iproute2"), ("tc", "iproute2"), ("unshare", "util-linux"))


def why_not_here(environ: Optional[Mapping[str, str]] = None, uid: Optional[int] = None) -> Optional[str]:
    """None when the lab may try; otherwise what is missing."""
    uid = os.geteuid() if uid is None else uid
    if uid != 0:
        return f"network namespaces and tc need root (running as uid {uid})"
    path = (os.environ if environ is None else environ).get("PATH", os.defpath)
    for tool, package in TOOLS:
        if shutil.which(tool, path=path) is None:
            return f"`{tool}` not found (apt-get install {package})"
    mpirun = (os.environ if environ is None else environ).get("DSGD_MPIRUN") or "mpirun"
    if shutil.which(mpirun, path=path) is None:
        return f"{mpirun} not found on PATH (activate the venv, or set DSGD_MPIRUN)"
    return None
