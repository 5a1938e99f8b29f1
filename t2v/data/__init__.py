"""Data for t2v: the synthworld dataset writer (later: the manifest dataset and latent cache)."""
