"""One job, start to summary: validate the config, claim the run dir, build, fit, test, write
``summary.json`` and the W&B run; resume, checkpoints, callbacks and the console."""
