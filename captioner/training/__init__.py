"""``captioner train``: a VLM fine-tuned into a captioner on annotations (ShareCaptioner-Video's second stage).

- :mod:`~captioner.training.conversations` — the four modes' (request, answer) pairs, tokenised as inference sees them;
- :mod:`~captioner.training.data` — the dataset and the one-mode-batch sampler under a mode mix;
- :mod:`~captioner.training.train` — the accelerate loop, checkpoints, validation, export;
- :mod:`~captioner.training.miniature` — the miniature ShareCaptioner on synthworld (``make captioner``);
- :mod:`~captioner.training.evaluate` — a captioner scored against synthworld ground truth.
"""
