import sys
from pathlib import Path

# `import launch.local_rank` must work however pytest was started (plain `pytest` does not
# put the repository root on sys.path, `python -m pytest` does).
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
