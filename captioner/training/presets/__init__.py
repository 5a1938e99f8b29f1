"""``captioner train`` presets shipped with the package (``captioner train mini`` finds ``mini.yaml`` here)."""
