"""Argument types shared by several sub-commands."""

from __future__ import annotations


def overlap_arg(value: str | int) -> int | None:
    """``--overlap``: pixels, or ``auto`` (None) for the tiling default that keeps patches up to 32 m whole.

    A bad value is a ``ValueError`` with the accepted forms, shown as the CLI's one-line error.
    """
    if str(value).strip().lower() == "auto":
        return None
    try:
        pixels = int(value)
    except ValueError:
        raise ValueError(f"--overlap must be a number of pixels or 'auto', not {value!r}") from None
    if pixels < 0:
        raise ValueError(f"--overlap must be at least 0 pixels, not {pixels}")
    return pixels
