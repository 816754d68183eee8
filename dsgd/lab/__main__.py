"""python -m dsgd.lab: see dsgd/lab/cli.py and docs/lab.md."""
import sys

from dsgd.lab.cli import main

sys.exit(main())
