"""Vision-language backends behind one interface (:mod:`captioner.backends.base`): ``oracle``
(synthworld, offline), ``hf`` (transformers), ``openai`` (any OpenAI-compatible server).
Built from a config by :func:`captioner.config.build_backend`."""
