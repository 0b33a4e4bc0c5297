"""qsnn's Hydra sweeper plugin: hydra/sweeper=list (see list_sweeper.py)."""
