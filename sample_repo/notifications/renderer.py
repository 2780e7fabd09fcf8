"""Template loading and rendering for notifications (``$placeholder`` text templates)."""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import Mapping

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
SUBJECT_PREFIX = "Subject:"


class TemplateNotFoundError(LookupError):
    """Raised when no template file exists for a template name."""


def split_subject(text: str) -> tuple[str, str]:
    """Split a rendered template into its ``Subject:`` header line and the message body."""
    first, _, rest = text.partition("\n")
    if first.startswith(SUBJECT_PREFIX):
        return first[len(SUBJECT_PREFIX):].strip(), rest.lstrip("\n")
    return "", text


class TemplateRenderer:
    """Loads text templates from notifications/templates and fills in their $placeholders."""

    def __init__(self, template_dir: Path | None = None) -> None:
        self.template_dir = template_dir or TEMPLATE_DIR
        self._cache: dict[str, Template] = {}

    def available(self) -> list[str]:
        """Return the names of every template, e.g. ``invoice_issued`` or ``welcome.sms``."""
        return sorted(path.name[: -len(".txt")] for path in self.template_dir.glob("*.txt"))

    def load(self, name: str) -> Template:
        """Read and cache the template called ``name`` (the file ``<name>.txt``)."""
        if name not in self._cache:
            path = self.template_dir / f"{name}.txt"
            if not path.is_file():
                raise TemplateNotFoundError(f"no template named {name!r} in {self.template_dir}")
            self._cache[name] = Template(path.read_text(encoding="utf-8"))
        return self._cache[name]

    def render(self, name: str, context: Mapping[str, object]) -> str:
        """Fill in a template; every placeholder must have a value in ``context``."""
        try:
            return self.load(name).substitute(context)
        except KeyError as exc:
            raise ValueError(f"template {name!r} needs a value for {exc.args[0]!r}") from None

    def render_message(self, name: str, context: Mapping[str, object]) -> tuple[str, str]:
        """Render a template and return ``(subject, body)``; SMS templates have no subject."""
        return split_subject(self.render(name, context))
