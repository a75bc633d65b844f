"""Why a target's read failed: the ``reason`` label values, known before any failure."""

from __future__ import annotations

from typing import Literal, get_args

Category = Literal["network", "timeout", "http", "retcode", "invalid_response", "internal"]
CATEGORIES: tuple[Category, ...] = get_args(Category)
#: Why a key listing (key health) failed: the cloud lacks the action (RetCode 161), refuses it
#: (a permanent RetCode), or how the call failed. Its own closed set: a listing has no usage
#: window, so it never fails for window semantics.
ListingReason = Literal["unsupported", "refused", "network", "timeout", "http", "retcode",
                        "invalid_response", "internal"]
KEY_LISTING_REASONS: tuple[ListingReason, ...] = get_args(ListingReason)
