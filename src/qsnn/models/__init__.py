"""Model builders: plain functions returning a ``qsnn.net.SpikingNet``."""
