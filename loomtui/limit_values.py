"""The values `limits:` in loom.yaml takes: memory as a size or a share of the machine's, CPUs as a
number or a share of the machine's, or `none`; each checked (for `file:line` errors) and read."""

from __future__ import annotations

import os
import re
from typing import Final

_SIZE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
_PERCENT: Final = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_UNITS: Final = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MIN_MEMORY_BYTES: Final = 32 << 20
"""Less than this and no agent CLI starts (node alone takes more): a typo such as `8` for `8G`."""


def memory_problem(text: str) -> str | None:
    """Why `text` is no memory limit (`8G`, `512 MiB`, `50%` of the machine's memory, `none`)."""
    if text.strip().lower() == "none":
        return None
    percent = _PERCENT.fullmatch(text.strip())
    if percent is not None:
        return None if 0 < float(percent[1]) <= 100 else "a share of memory is more than 0% and at most 100%"
    size = _SIZE.fullmatch(text.strip())
    if size is None:
        return "expected a size such as 8G or 512M, a share such as 50%, or none"
    if float(size[1]) * _UNITS[size[2].upper()] < MIN_MEMORY_BYTES:
        return f"at least {MIN_MEMORY_BYTES >> 20}M (no agent CLI starts in less)"
    return None


def memory_bytes(text: str) -> int | None:
    """The limit `text` names (see `memory_problem`) in bytes; None for none."""
    text = text.strip()
    if text.lower() == "none":
        return None
    percent = _PERCENT.fullmatch(text)
    if percent is not None:
        return max(MIN_MEMORY_BYTES, int(total_memory() * float(percent[1]) / 100))
    size = _SIZE.fullmatch(text)
    if size is None:
        raise ValueError(f"no memory limit: {text!r}")
    return int(float(size[1]) * _UNITS[size[2].upper()])

MIN_CPUS: Final = 0.01
"""Less than this and the kernel's smallest quota (1 ms in each 100 ms) is passed."""


def cpu_problem(text: str) -> str | None:
    """Why `text` is no CPU limit (`2`, `0.5` CPUs, `50%` of the machine's, `none`)."""
    text = text.strip()
    if text.lower() == "none":
        return None
    percent = _PERCENT.fullmatch(text)
    if percent is not None:
        return None if 0 < float(percent[1]) <= 100 else "a share of the CPUs is more than 0% and at most 100%"
    if re.fullmatch(r"\d+(?:\.\d+)?", text) is None:
        return "expected a number of CPUs such as 2 or 0.5, a share such as 50%, or none"
    return None if float(text) >= MIN_CPUS else f"at least {MIN_CPUS:g} of a CPU"


def cpu_count(text: str) -> float | None:
    """The CPUs `text` names (see `cpu_problem`); None for none."""
    text = text.strip()
    if text.lower() == "none":
        return None
    percent = _PERCENT.fullmatch(text)
    if percent is not None:
        return max(MIN_CPUS, (os.cpu_count() or 1) * float(percent[1]) / 100)
    return float(text)


def total_memory() -> int:
    """The machine's memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
