"""`python -m fuzz`: see fuzz/cli.py and docs/FUZZING.md."""

import sys

from fuzz.cli import main

sys.exit(main())
