"""Episode state: one store interface, SQLite by default.

Only the runner, the CLI and the review/serve entry points open a store; stages get theirs
from the context, so a stage never knows (or cares) which database it talks to.
"""

from __future__ import annotations

from pipeline.state.sqlite import (
    LEASE_SECONDS,
    StateDB,
    check_storable,
    owner_alive,
    process_token,
)

__all__ = ["LEASE_SECONDS", "StateDB", "check_storable", "owner_alive", "process_token"]
