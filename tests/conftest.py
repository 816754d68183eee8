import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# One decoded-dataset cache for the whole session (ranks started by tests inherit it), away from ~/.cache.
os.environ.setdefault("DSGD_CACHE_DIR", tempfile.mkdtemp(prefix="dsgd-test-cache-"))
