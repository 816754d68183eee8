import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# One decoded-dataset cache for the whole session (ranks started by tests inherit it), away from ~/.cache.
os.environ.setdefault("DSGD_CACHE_DIR", tempfile.mkdtemp(prefix="dsgd-test-cache-"))

# Every job here runs on this one host, where shared memory carries MPI traffic. Open MPI's libfabric
# transport would first spend about a second per job looking for a fabric that is not there.
os.environ.setdefault("OMPI_MCA_btl", "^ofi")
