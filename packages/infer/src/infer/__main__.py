"""`python -m infer ...`: the same as `infer ...`."""

import sys

from infer.cli import main

sys.exit(main())
