"""`python -m harness.cli`: the same as the `harness` console script."""
import sys

from harness.cli import console_main

sys.exit(console_main())
