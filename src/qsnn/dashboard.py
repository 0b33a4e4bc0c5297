"""``python -m qsnn.dashboard``: kept as a command; the dashboard is ``qsnn.study.dashboard``."""
import sys

from qsnn.study.dashboard import main

if __name__ == "__main__":
    sys.exit(main())
