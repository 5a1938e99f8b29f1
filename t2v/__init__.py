"""dense-t2v: caption-conditioned text-to-video (latent video DiT, trainer, pipeline, evaluation).

Heavy classes are imported lazily so ``t2v synth`` and friends start fast; diffusers finds
``t2v.T2VTransformer`` and ``t2v.TextToVideoPipeline`` here when it loads a saved pipeline folder.
"""

__all__ = ["T2VTransformer", "TextToVideoPipeline"]


def __getattr__(name: str):
    if name == "T2VTransformer":
        from t2v.models.backbone import T2VTransformer

        return T2VTransformer
    if name == "TextToVideoPipeline":
        from t2v.pipeline import TextToVideoPipeline

        return TextToVideoPipeline
    raise AttributeError(f"module 't2v' has no attribute {name!r}")
