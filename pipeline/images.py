"""Show artwork, opened safely: its size is read from the header before any pixel is decoded.

PIL's `Image.open` is lazy (it reads the header), but converting or resizing decodes the
whole picture: a 12000x12000 PNG of 0.4 MB took 1.4 GB, and above PIL's own guard (twice
`Image.MAX_IMAGE_PIXELS`) opening raised a DecompressionBombError that ended as an "internal
error". Here both become one clear refusal naming the size, the limit
(`[ingest] max_artwork_pixels`) and what to do.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from PIL import Image

from pipeline.errors import PipelineError

#: The most `[ingest] max_artwork_pixels` may allow (7071x7071; Apple's largest is 3000x3000).
MAX_ARTWORK_PIXELS = 50_000_000
#: PIL's own guard for every image this process opens: it warns above this and refuses at
#: twice this, when opening. Our limit is checked first, and is never above it.
Image.MAX_IMAGE_PIXELS = MAX_ARTWORK_PIXELS


def _refusal(path: Path, size: str, max_pixels: int) -> PipelineError:
    return PipelineError(
        f"show artwork {path.name} {size}; at most {max_pixels:,} pixels are decoded "
        "(ingest.max_artwork_pixels), and Apple wants 1400-3000 px a side: resize it "
        "(3000x3000 is best), then `learncast retry` the episodes that failed")


def artwork_size(path: Path, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header; PipelineError when it has more than `max_pixels`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
    except Image.DecompressionBombError as exc:  # PIL's guard spoke first; it says the size
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = (f"has {int(found.group(1)):,} pixels" if found
                else f"has more than {2 * MAX_ARTWORK_PIXELS:,} pixels")
        raise _refusal(path, size, max_pixels) from exc
    if width * height > max_pixels:
        raise _refusal(path, f"is {width}x{height} px ({width * height:,} pixels)",
                       max_pixels)
    return width, height
