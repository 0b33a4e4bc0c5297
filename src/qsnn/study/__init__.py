"""Many jobs -> one answer: the study protocol, group-sequential tests, the sweep report with its
verdict, and the W&B dashboard."""
