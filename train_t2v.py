"""Train a text-to-video model: parse → build → train → close (the same as `t2v train`).

    python train_t2v.py --config t2v/presets/tiny.yaml [--resume latest] [train.max_steps=200 ...]
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 train_t2v.py --config …   # DDP
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml train_t2v.py --config … train.parallel=fsdp
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--resume", default=None, help="'latest' or a checkpoint folder")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from t2v.config import load_config
    from t2v.train import train

    cfg = load_config(a.config, a.overrides)  # parse
    final = train(cfg, resume=a.resume)  # build → train → close (export)
    print(f"pipeline: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
