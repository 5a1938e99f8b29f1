"""``t2v compare``: score one or several trained models on the same prompts and seeds, and report the
differences; with one model, its scores next to chance and ceiling."""
