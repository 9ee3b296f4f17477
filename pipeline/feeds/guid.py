"""The Podcasting 2.0 `podcast:guid`: a feed's identity that survives a change of URL.

The spec derives it as a UUIDv5 of the feed URL with the scheme and trailing slashes removed,
in the namespace `ead4c236-bf58-58c6-a2c6-a6b28d128cb6`. Learncast computes it once, from the
first URL a feed had, and keeps it in the state database (a moved feed keeps its guid, which is
the whole point: apps and directories recognise the show at its new address).
"""

from __future__ import annotations

import re
import uuid

PODCAST_GUID_NAMESPACE = uuid.UUID("ead4c236-bf58-58c6-a2c6-a6b28d128cb6")


def podcast_guid(feed_url: str) -> str:
    """UUIDv5 of `feed_url` without `scheme://` and trailing slashes."""
    bare = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", feed_url.strip()).rstrip("/")
    return str(uuid.uuid5(PODCAST_GUID_NAMESPACE, bare))
