"""The trainer's components, each in its own module (torchtitan-style); :func:`t2v.train.train` wires them up
as build → resume → loop → export.

- :mod:`.build`       accelerator, models, data set, optimiser and EMA of a run (:class:`Run`); the pipeline around them
- :mod:`.data`        the resumable loader and the batch → (latents, text, mask) encoding
- :mod:`.optim`       AdamW and the LR schedule from the config
- :mod:`.ema`         the EMA model and the ``with ema_weights(ema, model):`` swap
- :mod:`.checkpoint`  save / find / load checkpoints (exact resume) and pruning
- :mod:`.metrics`     throughput, MFU, the expected run time, TensorBoard access
- :mod:`.loop`        the optimisation loop, with the time cap
- :mod:`.export`      the final pipeline, train_summary.json and the final samples
"""
