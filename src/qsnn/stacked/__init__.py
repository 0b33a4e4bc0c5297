"""Seeds as a batch dimension: the S seeds of one setting trained together as one stacked model.

- ``net``     : S per-seed ``SpikingNet``s -> one net whose tensors hold every seed (seeds folded
                into the first dim), and back (per-seed state dicts, per-seed optimizer state).
- ``quant``   : the weight quantizers with per-seed scales.
- ``support`` : which settings can stack, and why not when they cannot.
- ``seeds``   : one seed's job: its data, RNG streams, metrics, checkpoints, summary, W&B run.
- ``optim``   : the members' optimizers and LR schedules (one shared, or one per member).
- ``loop``    : the training loop over the stacked model.
The Hydra launcher (``launcher=stacked``) lives in ``src/hydra_plugins/qsnn_stacked_launcher``.
"""
