"""`python -m tests.bench` (what `make bench` runs); see tests/bench/main.py."""

import sys

from tests.bench.main import main

if __name__ == "__main__":
    sys.exit(main())
