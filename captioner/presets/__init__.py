"""Captioner presets shipped with the package (``--config oracle`` finds ``oracle.yaml`` here)."""
