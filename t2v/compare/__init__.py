"""``t2v compare``: score several trained models on the same prompts and seeds, and report the differences."""
