"""Training presets shipped with the package (``--config tiny`` finds ``tiny.yaml`` here)."""
