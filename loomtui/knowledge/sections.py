"""Sources split into sections: Markdown by headings, ADRs whole with their metadata, contracts whole.

A section is the unit of context an agent gets: one heading's text (up to the next
heading), one architectural decision record, or one contract file (an OpenAPI
document, a schema). Sections are named by their layer, their source path and their
heading path (`repo:AGENTS.md#Working on the billing service > Money`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Final

from loomtui.config import ADR_FOLDER_NAMES

__all__ = [
    "CHARS_PER_TOKEN",
    "AdrInfo",
    "Mention",
    "Section",
    "code_refs",
    "estimate_tokens",
    "is_adr_path",
    "parse_adr",
    "split_source",
]

CHARS_PER_TOKEN: Final = 4
"""Tokens are estimated, not counted: about four characters of English or code per token."""

MARKDOWN_SUFFIXES: Final = frozenset({".md", ".markdown", ".mdx"})
CONTRACT_SUFFIXES: Final = frozenset({".yaml", ".yml", ".json", ".proto", ".graphql", ".gql", ".avsc"})

_HEADING_OPENER = re.compile(r" {0,3}(#{1,6})[ \t]")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_CODE_SPAN = re.compile("`([^`\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]{2,200})`")  # within a line (as splitlines cuts)
_ADR_NUMBER_IN_NAME = re.compile(r"^(\d{1,6})(?=[-_. ])")
_ADR_NUMBER_IN_TITLE = re.compile(r"^(?:ADR[-\s]?)?#?(\d{1,6})[.:)\s-]+\s*(.*)$", re.IGNORECASE)
_FIELD_LINE = re.compile(r"^\s*[-*]?\s*\**(date|status)\**\s*:\s*\**\s*(.+?)\s*$", re.IGNORECASE)
# Not a digit after: Log4brains names ADRs by date (`superseded by [20230715-use-madr](...)`), which read as ADR 202307.
_SUPERSEDED_BY = re.compile(r"superseded\s+by\s+(?:\[)?(?:ADR[-\s]?)?#?0*(\d{1,6})(?!\d)", re.IGNORECASE)
_SUPERSEDES = re.compile(r"\bsupersedes\s+(?:\[)?(?:ADR[-\s]?)?#?0*(\d{1,6})(?!\d)", re.IGNORECASE)
_REF_SHAPE = re.compile(r"^[A-Za-z_./][\w./:-]*$")
_SENTENCE_END = re.compile(r"\.\s+(?![^\[\]]*\])|;\s+|[.;]$")
"""Where a status's first sentence ends: not inside a link's brackets (adr-tools' `Superseded by [5. Use X](...)`)."""
_LINK = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)")
_SUPERSEDES_LINE = re.compile(r"^[\s*_>-]*supersedes\b", re.IGNORECASE)
"""A line saying what the ADR supersedes (adr-tools writes one under its status); prose mentioning the word
elsewhere ("a draft claimed it supersedes ADR 3, which it does not") is no link."""
_MAYBE_MARKUP: Final = frozenset(" #`~=-")
"""The first characters a heading, a setext heading's underline or a code fence can start with (up to three
spaces first)."""
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")


def _heading(line: str) -> tuple[int, str] | None:
    """The level and title of an ATX heading line (`## Title ##`), or None for any other line.

    Parsed by hand rather than by one regex: a lazy title followed by optional
    blanks and closing hashes backtracks for minutes on a line of many blanks.
    """
    opener = _HEADING_OPENER.match(line)
    if opener is None:
        return None
    title = line[opener.end():].strip()
    unclosed = title.rstrip("#")
    if not unclosed:
        title = ""  # a line of hashes only: an empty heading
    elif unclosed != title and unclosed[-1] in " \t":
        title = unclosed.rstrip()  # a closing run of hashes counts only after a blank (CommonMark)
    return len(opener.group(1)), title


def estimate_tokens(text: str) -> int:
    """An estimate of how many tokens `text` costs an agent: characters / 4, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class Mention:
    """A path or code symbol a section names, as matched against the region index.

    `target` is a repository path or a region id (`path::qualname`); `exists` is
    None when it was not checked (no index given, or a name that may be external).
    """

    text: str
    kind: str  # "path" | "symbol"
    target: str
    exists: bool | None


@dataclass(frozen=True, slots=True)
class AdrInfo:
    """What an architectural decision record says about itself."""

    number: int | None
    title: str
    status: str
    date: str
    supersedes: tuple[int, ...] = ()
    superseded_by: tuple[int, ...] = ()

    @property
    def state(self) -> str:
        """The status's first word, lower case (accepted, proposed, superseded, ...)."""
        return self.status.split()[0].strip(".,;:").lower() if self.status.split() else ""


@dataclass(frozen=True)
class Section:
    """One unit of context: a heading's text, a whole ADR, or a whole contract file."""

    layer: str
    source: str
    heading: tuple[str, ...]
    text: str
    line: int
    kind: str  # "markdown" | "adr" | "contract" | "text"
    ordinal: int = 1  # the nth section with this heading path in its file
    adr: AdrInfo | None = None
    refs: tuple[str, ...] = ()
    mentions: tuple[Mention, ...] = ()
    hash: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.hash:
            digest = hashlib.sha256(self.text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
            object.__setattr__(self, "hash", digest)

    @property
    def title(self) -> str:
        if self.adr is not None:  # one without a number (Log4brains names them by date): its own title
            return f"ADR {self.adr.number:04d}: {self.adr.title}" if self.adr.number is not None else self.adr.title
        return self.heading[-1] + self._nth if self.heading else PurePosixPath(self.source).name

    @property
    def _nth(self) -> str:
        """` (2)` for the second section of a file with this heading path: two `Notes` read as one."""
        return f" ({self.ordinal})" if self.ordinal > 1 else ""

    @property
    def heading_path(self) -> str:
        """The heading path as shown: `Working on the billing service > Money`."""
        return " > ".join(self.heading)

    @property
    def id(self) -> str:
        """Stable across versions while the section keeps its file and heading path."""
        anchor = self.heading_path
        if self.ordinal > 1:
            anchor += f" ({self.ordinal})"
        return f"{self.layer}:{self.source}#{anchor}" if anchor else f"{self.layer}:{self.source}"

    @property
    def key(self) -> str:
        """What a more specific layer must match to replace this section: the heading path."""
        if self.kind in ("adr", "contract", "text") or not self.heading:
            return "file:" + self.source.lower()
        return " > ".join(" ".join(h.lower().split()) for h in self.heading) + (
            f" ({self.ordinal})" if self.ordinal > 1 else ""
        )

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.text)

    @property
    def label(self) -> str:
        """Where the section comes from, for people: `AGENTS.md > Money [repo]`."""
        where = f"{self.source} > {self.heading_path}{self._nth}" if self.heading and self.kind == "markdown" \
            else self.source
        return f"{where} [{self.layer}]"


def is_adr_path(path: str) -> bool:
    """Whether a Markdown source is an ADR: it lives in an `adr`, `adrs` or `decisions` directory, and is neither
    the folder's index (`README.md`, `index.md`) nor a template (MADR ships `adr-template.md`, whose status
    `{proposed | ... | superseded by ADR-0123}` read as a decision superseded by ADR 123)."""
    parts = PurePosixPath(path).parts
    return _in_adr_folder(parts) and not _not_an_adr(parts[-1])


_TEMPLATE_STEM = re.compile(r"_?(?:m?adr[-_])?(?:0+[-_])?(?:m?adr[-_])?template"
                            r"(?:[-_](?:adr|madr|nygard|bare|minimal|short|long|full|lite|v\d+))*")
"""The names templates go by (`template`, `_template`, MADR's `adr-template-bare-minimal`, `0000-template`,
`ADR-000-template`; lowercased): not an ADR about templates (`0002-use-jinja-templates-for-emails`), nor one
whose name starts with the word (`template-engine-choice`)."""


def is_adr_template(path: str) -> bool:
    """Whether a file of an ADR folder is a template for new ones: not a decision, and no context."""
    parts = PurePosixPath(path).parts
    return bool(_TEMPLATE_STEM.fullmatch(PurePosixPath(parts[-1].lower()).stem)) and _in_adr_folder(parts)


def _in_adr_folder(parts: tuple[str, ...]) -> bool:
    return any(part.lower() in ADR_FOLDER_NAMES for part in parts[:-1])


def _not_an_adr(name: str) -> bool:
    stem = PurePosixPath(name.lower()).stem
    return stem in ("readme", "index", "toc", "summary") or bool(_TEMPLATE_STEM.fullmatch(stem))


def split_source(layer: str, path: str, text: str) -> list[Section]:
    """The sections of one source file's text."""
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in MARKDOWN_SUFFIXES:
        if is_adr_path(path):
            return [_adr_section(layer, path, text)]
        if is_adr_template(path):
            return []
        return split_markdown(layer, path, text)
    kind = "contract" if suffix in CONTRACT_SUFFIXES else "text"
    if not text.strip():
        return []
    return [Section(layer, path, (), text, 1, kind)]


def split_markdown(layer: str, path: str, text: str) -> list[Section]:
    """Split Markdown at its headings, ATX (`## Title`) and setext (`Title` over `===` or `---`), not inside
    fenced code; blank sections are dropped, and so is a YAML front matter (a docs site's `title:` and
    `sidebar_position:` were a section of their own, sliced to agents)."""
    lines = text.splitlines(keepends=True)
    skip = _front_matter_end(lines)
    stack: list[tuple[int, str]] = []
    starts: list[tuple[int, tuple[str, ...], int]] = [(skip, (), 0)]  # (first line, heading path, heading's lines)
    fence: str | None = None
    for number, line in enumerate(lines):
        if number < skip or line[:1] not in _MAYBE_MARKUP:
            continue  # prose: neither a heading nor a fence (most lines; the regexes are the cost)
        fenced = _FENCE.match(line)
        if fence is not None:
            if fenced and fenced.group(1)[0] == fence[0] and len(fenced.group(1)) >= len(fence) \
                    and not fenced.group(2).strip():
                fence = None
            continue
        if fenced:
            fence = fenced.group(1)
            continue
        heading = _heading(line)
        first, size = number, 1
        if heading is None:
            heading = _setext(lines, number, starts[-1][0] + starts[-1][2])
            first, size = number - 1, 2
        if heading is None:
            continue
        level, title = heading
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        starts.append((first, tuple(t for _, t in stack), size))
    sections: list[Section] = []
    seen: dict[str, int] = {}
    for i, (start, heading_path, size) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(lines)
        chunk = "".join(lines[start:end])
        body = "".join(lines[start + size:end])
        if not body.strip():
            continue
        # Counted by the path as the id writes it: `## A > B` and `## A` / `### B` were one id, and drift
        # compared one section's old text with the other's.
        joined = " > ".join(heading_path)
        ordinal = seen[joined] = seen.get(joined, 0) + 1
        sections.append(Section(layer, path, heading_path, chunk.rstrip() + "\n", start + 1, "markdown",
                                ordinal=ordinal, refs=code_refs(chunk)))
    return sections


def _front_matter_end(lines: Sequence[str]) -> int:
    """The first line after a YAML front matter (`---` on the first line, a `key:` next, to a `---` or `...`
    line), or 0 (a rule drawn on the first line is no front matter)."""
    if len(lines) < 2 or lines[0].rstrip() != "---" or not _FRONT_MATTER_KEY.match(lines[1]):
        return 0
    for number in range(1, min(len(lines), MAX_FRONT_MATTER_LINES)):
        if lines[number].rstrip() in ("---", "..."):
            return number + 1
    return 0


MAX_FRONT_MATTER_LINES: Final = 200
_FRONT_MATTER_KEY: Final = re.compile(r"[A-Za-z_][\w-]*[ \t]*:")


def _setext(lines: Sequence[str], number: int, after: int) -> tuple[int, str] | None:
    """The level and title of a setext heading whose underline is line `number` (`===` level 1, `---` level
    2): a one-line paragraph after a blank line (or the section's start, `after`) underlined. Its text was
    folded into the section before it, and its heading words never weighed as a heading's."""
    underline = _SETEXT_UNDERLINE.match(lines[number])
    if underline is None or number < 1 or number - 1 < after:
        return None
    title = lines[number - 1].strip()
    before = lines[number - 2] if number >= 2 else "\n"
    if not title or before.strip() and number - 1 > after or _heading(lines[number - 1]) is not None \
            or _FENCE.match(lines[number - 1]) or title[0] in "-*+>|" or title[:1].isdigit() and ". " in title:
        return None
    return (1 if underline.group(1)[0] == "=" else 2), title


def _adr_section(layer: str, path: str, text: str) -> Section:
    return Section(layer, path, (), text.rstrip() + "\n", 1, "adr", adr=parse_adr(path, text), refs=code_refs(text))


def parse_adr(path: str, text: str) -> AdrInfo:
    """Number, title, status, date and supersession links of an ADR (Nygard or MADR style)."""
    name = PurePosixPath(path).name
    number: int | None = None
    if found := _ADR_NUMBER_IN_NAME.match(name):
        number = int(found.group(1))
    title = PurePosixPath(path).stem
    status = date = ""
    links: list[str] = []  # the status section's lines and any `Supersedes ...` line
    lines = text.splitlines()
    current: str | None = None
    for line in lines:
        heading = _heading(line)
        if heading:
            level, words = heading
            if level == 1 and title == PurePosixPath(path).stem:
                in_title = _ADR_NUMBER_IN_TITLE.match(words)
                if in_title and in_title.group(2):
                    number = number if number is not None else int(in_title.group(1))
                    title = in_title.group(2).strip()
                else:
                    title = words
            current = words.lower()
            continue
        stripped = line.strip()
        if not stripped:
            continue
        if current == "status" or _SUPERSEDES_LINE.match(line):
            links.append(stripped)
        if current in ("status", "date") and not (status if current == "status" else date):
            if current == "status":
                status = stripped.lstrip("-* ")
            else:
                date = stripped.lstrip("-* ")
            continue
        field_line = _FIELD_LINE.match(line)
        if field_line:
            which, value = field_line.group(1).lower(), field_line.group(2).strip("* ")
            if len(value) > 1 and value[0] == value[-1] and value[0] in "\"'":  # YAML's `status: "rejected"`
                value = value[1:-1].strip()
            if which == "status" and not status:
                status = value
                links.append(value)  # MADR's `* Status: accepted. Supersedes ADR-0003`
            elif which == "date" and not date:
                date = value
    superseded_by = tuple(sorted({int(n) for n in _SUPERSEDED_BY.findall(status)}))
    supersedes = tuple(sorted({int(n) for n in _SUPERSEDES.findall("\n".join(links))} - {number or -1}))
    return AdrInfo(number, title, _first_sentence(status), date, supersedes, superseded_by)


def _first_sentence(status: str) -> str:
    """The status itself: "Accepted. Supersedes ADR 0002." is "Accepted" (the links are parsed apart)."""
    return _SENTENCE_END.split(_LINK.sub(r"[\1]", status), maxsplit=1)[0].strip()


def code_refs(text: str) -> tuple[str, ...]:
    """Code spans outside fenced blocks that may name a path or symbol (`payments.currency`)."""
    if "`" not in text:
        return ()
    if "```" not in text and "~~~" not in text:  # no fence: every span counts, found in one pass
        return _shaped(_CODE_SPAN.findall(text))
    spans: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        if "`" not in line and "~" not in line:
            continue  # neither a fence nor a code span
        fenced = _FENCE.match(line) if line[:1] in _MAYBE_MARKUP else None
        if fence is not None:
            if fenced and fenced.group(1)[0] == fence[0] and not fenced.group(2).strip():
                fence = None
            continue
        if fenced:
            fence = fenced.group(1)
            continue
        if "`" in line:
            spans.extend(_CODE_SPAN.findall(line))
    return _shaped(spans)


def _shaped(spans: list[str]) -> tuple[str, ...]:
    """The spans shaped like a path or a symbol, once each, in order."""
    candidates = (span.strip().removesuffix("()") for span in spans)
    return tuple(dict.fromkeys(c for c in candidates if _REF_SHAPE.match(c)))
