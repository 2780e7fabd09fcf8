"""The values `limits:` in loom.yaml takes: memory as a size or a share of the machine's, CPUs as a
number or a share of the machine's, the largest file as a size, or `none`; each checked (for `file:line`
errors) and read."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Final

from loomtui.errors import listed, quoted

_SIZE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
_PERCENT: Final = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_UNITS: Final = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MIN_MEMORY_BYTES: Final = 32 << 20
"""Less than this and no agent CLI starts (node alone takes more): a typo such as `8` for `8G`."""


def memory_problem(text: str) -> str | None:
    """Why `text` is no memory limit (`8G`, `512 MiB`, `50%` of the machine's memory, `none`)."""
    return _problem(memory_bytes, text)


def memory_bytes(text: str) -> int | None:
    """The limit `text` names in bytes; None for none. ValueError says why `text` is no limit."""
    share = _share(text, "memory")
    if share is not None:
        return max(MIN_MEMORY_BYTES, int(total_memory() * share)) if share else None
    size = _SIZE.fullmatch(text.strip())
    if size is None:
        raise ValueError("expected a size such as 8G or 512M, a share such as 50%, or none")
    limit = int(float(size[1]) * _UNITS[size[2].upper()])
    if limit < MIN_MEMORY_BYTES:
        raise ValueError(f"at least {MIN_MEMORY_BYTES >> 20}M (no agent CLI starts in less)")
    return limit


MIN_CPUS: Final = 0.01
"""Less than this and the kernel's smallest quota (1 ms in each 100 ms) is passed."""


def cpu_problem(text: str) -> str | None:
    """Why `text` is no CPU limit (`2`, `0.5` CPUs, `50%` of the machine's, `none`)."""
    return _problem(cpu_count, text)


def cpu_count(text: str) -> float | None:
    """The CPUs `text` names; None for none. ValueError says why `text` is no limit."""
    share = _share(text, "the CPUs")
    if share is not None:
        return max(MIN_CPUS, (os.cpu_count() or 1) * share) if share else None
    if re.fullmatch(r"\d+(?:\.\d+)?", text.strip()) is None:
        raise ValueError("expected a number of CPUs such as 2 or 0.5, a share such as 50%, or none")
    if float(text) < MIN_CPUS:
        raise ValueError(f"at least {MIN_CPUS:g} of a CPU")
    return float(text)


MIN_FILE_BYTES: Final = 1 << 20
"""Less than this and a sandbox's ordinary source files would not be saved: a typo such as `100` for `100M`."""


def file_size_problem(text: str) -> str | None:
    """Why `text` is no largest file (`100M`, `2G`, `none`)."""
    return _problem(file_size_bytes, text)


def file_size_bytes(text: str) -> int | None:
    """The largest file `text` allows in bytes; None for none. ValueError says why it is no size."""
    if text.strip().lower() == "none":
        return None
    size = _SIZE.fullmatch(text.strip())
    if size is None:
        raise ValueError("expected a size such as 100M or 2G, or none")
    limit = int(float(size[1]) * _UNITS[size[2].upper()])
    if limit < MIN_FILE_BYTES:
        raise ValueError("at least 1M (an ordinary source file would not be saved)")
    return limit


def said_size(size: int) -> str:
    """`size` bytes for a person: `3.0 GiB`, `120.5 MiB`, `0.5 MiB`."""
    return f"{size / (1 << 30):.1f} GiB" if size >= 1 << 30 else f"{size / (1 << 20):.1f} MiB"


EXPORT_TOTAL_FILES: Final = 10
"""A change's new or changed files together may come to this many times `limits.file_size` (1 GB by default)
where loomtui copies them (a check's tree, an isolated agent's commits brought in): many files just under the
limit filled the disk at each export."""


def too_large_together(total: int, limit: int, what: str) -> str | None:
    """Why `what` (files a change brought, `total` bytes) is too much together for `limit` (`limits.file_size`),
    or None: past EXPORT_TOTAL_FILES times it."""
    if total <= EXPORT_TOTAL_FILES * limit:
        return None
    return (f"{what} come to {said_size(total)}, more than {EXPORT_TOTAL_FILES} times limits.file_size "
            f"({said_size(limit)}) together")


def too_large_said(found: Sequence[tuple[str, int]], limit: int) -> str:
    """Files (path, size) larger than `limits.file_size` (`limit` bytes), for a person."""
    files = listed([f"{quoted(path)} ({said_size(size) if size >= 0 else 'its size unreadable'})"
                    for path, size in found])
    return f"{files} {'is' if len(found) == 1 else 'are'} larger than limits.file_size allows ({said_size(limit)})"


def _share(text: str, of_what: str) -> float | None:
    """`50%` as 0.5 and `none` as 0.0 (no limit); None for text that is neither (a size, a count)."""
    text = text.strip()
    if text.lower() == "none":
        return 0.0
    percent = _PERCENT.fullmatch(text)
    if percent is None:
        return None
    if not 0 < float(percent[1]) <= 100:
        raise ValueError(f"a share of {of_what} is more than 0% and at most 100%")
    return float(percent[1]) / 100


def _problem(read: Callable[[str], object], text: str) -> str | None:
    try:
        read(text)
    except ValueError as exc:
        return str(exc)
    return None


def total_memory() -> int:
    """The machine's memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
