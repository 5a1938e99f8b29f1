"""clipio — the base package: video clips, manifests, configs and pictures in and out.

- ``clipio.video``     open / probe / seek / iterate videos (decord, PyAV); write mp4 and gif; typed errors
- ``clipio.manifest``  the JSONL manifest, the one contract between the captioner and t2v
- ``clipio.config``    strict typed configs from YAML (unknown key or wrong type → error naming it)
- ``clipio.images``    contact sheets (labelled frame grids) saved as PNG
- ``clipio.pixels``    the one pixel conversion: uint8 ↔ float in [−1, 1]

It imports none of the project's other packages: base ← synthworld ← captioner ← t2v.
"""
