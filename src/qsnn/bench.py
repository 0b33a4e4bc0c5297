"""``python -m qsnn.bench`` (``make bench``): kept as a command; the benchmark is ``qsnn.cost.bench``."""
from qsnn.cost.bench import main

if __name__ == "__main__":
    main()
