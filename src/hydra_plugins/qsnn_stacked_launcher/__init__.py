"""Hydra launcher ``stacked`` (``launcher=stacked``): the seeds of one setting train in one process
as one stacked model (``qsnn.stacked``); settings run in parallel like hydra-joblib-launcher."""
