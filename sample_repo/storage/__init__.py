"""In-memory persistence for the billing service: repositories and id generation."""

from .ids import IdGenerator, new_id
from .repository import InMemoryRepository, NotFoundError, Repository

__all__ = ["IdGenerator", "InMemoryRepository", "NotFoundError", "Repository", "new_id"]
