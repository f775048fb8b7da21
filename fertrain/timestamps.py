"""The one way fertrain writes a time into its records (run status, locks, reports, manifests, plans):
local ISO 8601 to the second with the UTC offset, e.g. 2026-11-24T09:15:02+0100, so records made on
machines in other time zones still order and compare."""

from __future__ import annotations

import time

LOCAL_ISO = "%Y-%m-%dT%H:%M:%S%z"


def local_timestamp(seconds: float | None = None) -> str:
    """`seconds` since the epoch (now by default) as local ISO 8601 with its offset."""
    return time.strftime(LOCAL_ISO, time.localtime(seconds))
