"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class LoomError(Exception):
    """A user-facing error: its message is one clear line; `exit_code` is what the CLI returns."""

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class NotARepository(LoomError):
    """The working directory is not inside a git repository."""


class ConfigError(LoomError):
    """A config, policy or theme file is malformed; the message starts with file:line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.detail = message


class StoreError(LoomError):
    """The state store cannot be opened or written (corrupt, locked, unwritable)."""


class AuditError(LoomError):
    """The audit log cannot be written or read."""
