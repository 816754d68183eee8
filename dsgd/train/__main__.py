import sys

from dsgd.train.cli import main

sys.exit(main())
