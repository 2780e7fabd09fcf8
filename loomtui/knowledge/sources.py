"""Context sources read at a commit (or the working tree), merged across layers, and versioned.

The repository's own sources (`context.sources`) are the most specific layer,
named `repo`. Layers from outside the repository (`context.layers`: a local git
repository read at a pinned ref, or a directory) come first, least specific
first; a section whose heading path a later layer repeats is replaced by it.

A **context version** is a hash over (layer, path, git blob id) of every source
file: the same files give the same version whether read from a commit or from a
working tree, and any edit to any source gives a new one. Git is always run with
loomtui's distrusting flags, and a blob is read through `git cat-file`, never by
checking anything out.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Final

import pathspec

from loomtui.config import CONFIG_PATH, ContextConfig, ContextLayer
from loomtui.coordination.index import RepoIndex
from loomtui.errors import LoomError, shown
from loomtui.globs import glob_spec, matchable, name_problem
from loomtui.knowledge.rules import Rule, parse_rules
from loomtui.knowledge.sections import MARKDOWN_SUFFIXES, Mention, Section, split_source
from loomtui.knowledge.trees import FileTree, GitTree, LinkInTree, SourceTree, git_text, head_commit
from loomtui.yamlcheck import undecodable_at

__all__ = [
    "MAX_LAYER_BYTES",
    "MAX_LAYER_FILES",
    "MAX_SOURCE_BYTES",
    "REPO_LAYER",
    "WORKTREE",
    "Context",
    "LayerState",
    "SourceFile",
    "VersionEntry",
    "context_versions",
    "head_commit",
    "load_context",
    "resolve_at",
    "resolve_mentions",
]

MAX_SOURCE_BYTES: Final = 256 * 1024
"""At most this much (256 KiB) of one source file is read; the rest is left out and reported."""

MAX_LAYER_BYTES: Final = 32 * 1024 * 1024
MAX_LAYER_FILES: Final = 5_000
"""A layer's sources stop at this many files or bytes read (sorted by path), and the rest is
reported: every sandbox start and `context show` reads them all, and a slice's budget is thousands
of tokens, so a layer that matches a whole tree of large files (an agent's commit can make one)
would cost gigabytes and minutes for nothing an agent could be given."""

REPO_LAYER: Final = "repo"
WORKTREE: Final = "worktree"
_BINARY_SNIFF = 8192
_GLOB_CHARS = frozenset("*?[")
_HEX = frozenset("0123456789abcdef")


# -- globs ------------------------------------------------------------------------------


def _anchored(pattern: str) -> str:
    """A source glob anchored at the top of its tree (`AGENTS.md` is the top file, not any)."""
    negated = pattern.startswith("!")
    body = pattern[1:] if negated else pattern
    if not body.startswith(("/", "**")):
        body = "/" + body
    return ("!" if negated else "") + body


def _spec(patterns: Sequence[str]) -> pathspec.GitIgnoreSpec:
    return glob_spec([_anchored(p) for p in patterns])


def git_pathspecs(patterns: Sequence[str]) -> list[str]:
    """The source globs as git pathspecs (for `git log -- ...`)."""
    specs = []
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = (pattern[1:] if negated else pattern).lstrip("/")
        if body.endswith("/"):
            body += "**"
        specs.append(f":({'exclude,' if negated else ''}glob){body}")
    return specs


# -- the context ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFile:
    layer: str
    path: str
    blob: str
    size: int
    truncated: bool
    sections: int


@dataclass(frozen=True)
class LayerState:
    """One layer as read: where from, at which commit (repo layers), and its own version."""

    name: str
    where: str
    ref: str | None
    commit: str | None
    version: str
    files: int


@dataclass
class Context:
    """Every section of every layer at one point, merged, with its version and its problems."""

    version: str
    commit: str | None  # the repository's commit read; None for its working tree
    layers: list[LayerState]
    files: list[SourceFile]
    sections: list[Section]
    overridden: list[tuple[str, str]]  # (section id replaced, id of the section replacing it)
    rules: list[Rule]
    problems: list[str]
    config: ContextConfig
    repo_files: frozenset[str] = frozenset()
    cache: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    @property
    def at(self) -> str:
        return self.commit or WORKTREE

    def section(self, section_id: str) -> Section | None:
        return self.by_id().get(section_id)

    def by_id(self) -> dict[str, Section]:
        found = self.cache.get("by_id")
        if not isinstance(found, dict):
            found = {s.id: s for s in self.sections}
            self.cache["by_id"] = found
        return found

    def file_blobs(self) -> dict[str, str]:
        """`layer:path` -> blob id of every source file."""
        return {f"{f.layer}:{f.path}": f.blob for f in self.files}


def _version(pairs: Iterable[tuple[str, str, str]]) -> str:
    digest = hashlib.sha256()
    for layer, path, blob in pairs:
        digest.update(f"{layer}\0{path}\0{blob}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:12]


def _decode(data: bytes, shown_path: str, problems: list[str]) -> str | None:
    """A source's text. A UTF-8 byte order mark (Windows editors write one) is dropped: before the `#` it made
    the first heading no heading, and an ADR lost its title. UTF-16 (PowerShell's `>`) is said as such."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        problems.append(f"{shown_path}: UTF-16 text, skipped: save it as UTF-8")
        return None
    if b"\0" in data[:_BINARY_SNIFF]:
        problems.append(f"{shown_path}: a binary file, skipped")
        return None
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 3 and exc.reason == "unexpected end of data":
            return data[: exc.start].decode("utf-8")  # a cut inside the last character
        line, problem = undecodable_at(data, exc.start)
        problems.append(f"{shown_path}:{line}: {problem}; undecodable bytes are shown as U+FFFD")
        return data.decode("utf-8", "replace")


def _read_layer(name: str, tree: SourceTree | GitTree, patterns: Sequence[str], problems: list[str],
                *, report_missing: bool) -> tuple[list[SourceFile], list[Section], list[Rule], dict[str, str | None]]:
    listing = tree.listing()
    # A commit's symlinks, met as the working tree's are (`CLAUDE.md -> AGENTS.md` read "no such file" at
    # every commit, and one leading out of the repository went unsaid there).
    links = tree.links if isinstance(tree, GitTree) else {}
    spec = _spec(patterns)
    chosen: list[str] = []
    directories: dict[str, None] = {}
    for path in sorted([*listing, *links]):
        if problem := name_problem(path):  # matched as it reads, said, and left out (it failed every command)
            if spec.match_file(matchable(path)):
                problems.append(f"{_where(name, shown(path))}: {problem}; not read (rename the file)")
            continue
        if not spec.match_file(path):
            continue
        directory = _matched_directory(spec, path)
        if directory is None:
            chosen.append(path)
        else:
            directories.setdefault(directory)
    if report_missing:
        for directory in directories:
            problems.append(f"{_where(name, directory)}: a directory, not a source file (to read the "
                            f"files in it, name it as a directory: {shown(directory)}/)")
        for pattern in patterns:
            if pattern.startswith("!"):
                continue
            literal = pattern.lstrip("/")
            if ".." in PurePosixPath(literal).parts or pattern.startswith("~"):
                # Sources are paths inside the repository (a leading / is its root): say so, not "no such file"
                problems.append(f"{_where(name, pattern)}: outside the repository (sources are paths inside it, "
                                "from its root)")
                continue
            if _GLOB_CHARS & set(literal):
                own = _spec([pattern])
                if not any(own.match_file(p) for p in chosen):
                    problems.append(f"{_where(name, literal)}: no file matches")
            elif literal not in listing and literal not in links and \
                    not any(p.startswith(literal.rstrip("/") + "/") for p in chosen):
                problems.append(f"{_where(name, literal)}: no such file")
    files: list[SourceFile] = []
    sections: list[Section] = []
    rules: list[Rule] = []
    read = 0
    for number, path in enumerate(chosen):
        label = _where(name, path)
        if number >= MAX_LAYER_FILES or read >= MAX_LAYER_BYTES:
            problems.append(f"{label}: and {len(chosen) - number:,} more source files left out (a layer reads at "
                            f"most {MAX_LAYER_FILES:,} files and {MAX_LAYER_BYTES // (1024 * 1024)} MiB)")
            break
        try:
            try:
                data, blob, size = _read_file(tree, path, listing, links)
            except LinkInTree as link:
                if link.target in chosen:  # a link to a source is that source, read by its own name: nothing lost
                    continue
                # A link to a file no source names (`CLAUDE.md -> README.md`): read through it, by the link's name
                # (it was left out, said as "read once, by its own name").
                data, blob, size = _read_file(tree, link.target, listing, links, link=path)
        except OSError as exc:
            problems.append(f"{label}: cannot read: {exc.strerror or exc}")
            continue
        read += len(data)
        truncated = size > len(data)
        if truncated:
            cut = data.rfind(b"\n")
            data = data[: cut + 1] if cut > 0 else data
            # A line is never cut: what is used ends at the last newline within the limit (6 bytes of a
            # file whose second line is 300 KiB long), said as such, not as a puzzling "the first 6".
            problems.append(f"{label}: {size:,} bytes; only its first {len(data):,} bytes are used, "
                            + (f"the whole lines within the first {MAX_SOURCE_BYTES:,}" if cut > 0 else
                               f"its first line cut at {MAX_SOURCE_BYTES:,}") + " (the most read of a file)")
        text = _decode(data, label, problems)
        found = split_source(name, path, text) if text is not None else []
        if text is not None and PurePosixPath(path).suffix.lower() in MARKDOWN_SUFFIXES and "loom-rule" in text:
            file_rules, rule_problems = parse_rules(name, path, text)
            rules.extend(file_rules)
            problems.extend(f"{name}:{p}" if name != REPO_LAYER else p for p in rule_problems)
        files.append(SourceFile(name, path, blob, size, truncated, len(found)))
        sections.extend(found)
    return files, sections, rules, listing


def _read_file(tree: SourceTree | GitTree, path: str, listing: Mapping[str, str | None], links: Mapping[str, str],
               *, link: str | None = None) -> tuple[bytes, str, int]:
    """The first MAX_SOURCE_BYTES of a file of the tree, its blob id and its size; `link` names the symlink
    read through to it (one link, never a chain)."""
    try:
        if isinstance(tree, GitTree):
            if path in links:
                raise tree.link_problem(path)
            blob = listing.get(path)
            if blob is None:
                raise FileNotFoundError(0, "no such file")
            data, size = tree.read_blob(blob, MAX_SOURCE_BYTES)
            return data, blob, size
        return tree.read(path, MAX_SOURCE_BYTES)
    except OSError as exc:
        if link is None:
            raise
        why = "a link too" if isinstance(exc, LinkInTree) else (exc.strerror or str(exc)).lower()
        raise OSError(0, f"a link to {path}, which is {why}" if isinstance(exc, LinkInTree)
                      else f"a link to {path}: {why}") from exc


def _matched_directory(spec: pathspec.GitIgnoreSpec, path: str) -> str | None:
    """None when a pattern names `path` itself; else the directory above it that a file glob
    happened to match (`docs/conventions/odd.md/` for `docs/conventions/*.md`): only files are
    sources, so what is inside it is not. A pattern naming a directory (`docs/adr/`, or a path
    without a glob) takes the files under it."""
    above: str | None = None
    for pattern in spec.patterns:
        if not pattern.include or not isinstance(pattern, pathspec.RegexPattern) or pattern.regex is None:
            continue
        regex = pattern.regex
        found = regex.match(path)
        if found is None:
            continue
        raw = str(pattern.pattern)
        if "ps_d" not in regex.groupindex or regex.fullmatch(path) or raw.endswith("/") \
                or not _GLOB_CHARS & set(raw):
            return None
        above = above or path[: found.start("ps_d")]
    return above


def _where(layer: str, path: str) -> str:
    return shown(path) if layer == REPO_LAYER else f"{layer}:{shown(path)}"


def _outside_tree(root: Path, layer: ContextLayer,
                  problems: list[str]) -> tuple[SourceTree | GitTree | None, LayerState]:
    raw = layer.repo if layer.repo is not None else layer.dir
    assert raw is not None
    location = (root / os.path.expanduser(raw)).resolve()
    missing = LayerState(layer.name, str(location), layer.ref if layer.repo else None, None, "", 0)
    if not location.is_dir():
        problems.append(f"layer {layer.name}: {shown(str(location))}: no such directory; the layer is left out")
        return None, missing
    if layer.dir is not None:
        return FileTree(location, git_listing=False), missing
    commit = head_commit(location, layer.ref)
    if commit is None:
        problems.append(f"layer {layer.name}: {shown(str(location))}: no commit {shown(layer.ref)} "
                        "(not a git repository, or the ref is missing); the layer is left out")
        return None, missing
    state = replace(missing, commit=commit)
    return GitTree(location, commit, f"{location}@{layer.ref}"), state


def load_context(root: Path, config: ContextConfig, *, at: str | None = None) -> Context:
    """Read, split and merge every layer's sources.

    `at` is a commit-ish of the repository at `root` (its sources are read from
    git's objects) or None / "worktree" for the files on disk. Problems with one
    source (missing, unreadable, not UTF-8, too large) are reported in `problems`
    and the rest is still used. An unknown `at` is a LoomError.
    """
    root = Path(root)
    problems: list[str] = []
    commit: str | None = None
    if at not in (None, WORKTREE):
        assert at is not None
        commit = head_commit(root, at)
        if commit is None:
            if head_commit(root) is None:
                raise LoomError(f"{shown(at)}: the repository has no commits yet (use the working tree)")
            raise LoomError(f"{shown(at)}: no such commit or ref")
    layers: list[LayerState] = []
    all_files: list[SourceFile] = []
    merged: dict[str, Section] = {}
    order: list[str] = []
    overridden: list[tuple[str, str]] = []
    rules: dict[str, Rule] = {}
    repo_listing: Mapping[str, str | None] = {}
    plan: list[tuple[str, SourceTree | GitTree | None, LayerState, Sequence[str], bool]] = []
    for layer in config.layers:
        tree, state = _outside_tree(root, layer, problems)
        plan.append((layer.name, tree, state, layer.sources, True))
    repo_tree: SourceTree | GitTree = (GitTree(root, commit, f"{root}@{commit[:12]}") if commit
                                   else FileTree(root, git_listing=True))
    repo_state = LayerState(REPO_LAYER, str(root), None, commit, "", 0)
    defaults = config.sources == ContextConfig().sources
    plan.append((REPO_LAYER, repo_tree, repo_state, config.sources, not defaults))
    for name, tree, state, patterns, report in plan:
        if tree is None:
            layers.append(state)
            continue
        try:
            files, sections, layer_rules, listing = _read_layer(name, tree, patterns, problems,
                                                                 report_missing=report)
        except LoomError as exc:
            problems.append(f"layer {name}: {exc}")
            layers.append(state)
            continue
        finally:
            if isinstance(tree, GitTree):
                tree.close()
        if name == REPO_LAYER:
            repo_listing = listing
        layers.append(replace(state, where=tree.where,
                              version=_version((name, f.path, f.blob) for f in files), files=len(files)))
        all_files.extend(files)
        _add_rules(rules, layer_rules, problems)
        for section in sections:
            earlier = merged.get(section.key)
            if earlier is not None and earlier.layer != section.layer:
                overridden.append((earlier.id, section.id))
                merged[section.key] = section
                continue
            key = section.key if earlier is None else f"{section.key}\0{section.id}"
            merged[key] = section
            order.append(key)
    version = _version_of_layers([(s.name, s.version) for s in layers if s.name != REPO_LAYER and s.version],
                                 [(REPO_LAYER, f.path, f.blob) for f in all_files if f.layer == REPO_LAYER])
    return Context(version=version, commit=commit, layers=layers, files=all_files,
                   sections=[merged[k] for k in order if k in merged], overridden=overridden,
                   rules=list(rules.values()), problems=problems, config=config, repo_files=frozenset(repo_listing))


def _add_rules(rules: dict[str, Rule], layer_rules: Sequence[Rule], problems: list[str]) -> None:
    """One layer's `loom-rule`s, by id: a more specific layer's replaces an earlier layer's of the same
    id, as its sections do; a second of one id in the same layer is a problem and is left out (a
    finding must name one rule)."""
    first: dict[str, str] = {}
    for rule in layer_rules:
        where = rule.origin.removeprefix(f"{REPO_LAYER}:")
        if rule.id in first:
            problems.append(f"{where}: loom-rule id {rule.id!r} is already used at {first[rule.id]}; "
                            "this block is left out")
            continue
        first[rule.id] = where
        rules[rule.id] = rule


def resolve_at(root: Path, text: str, config: ContextConfig) -> str | None:
    """A commit for a user's `V`: a context version id (or prefix), a commit-ish, or worktree (None)."""
    if text in (WORKTREE, "working-tree", "wt"):
        return None
    if head_commit(root) is None:
        raise LoomError(f"{shown(text)}: the repository has no commits yet (use worktree)")
    if len(text) >= 4 and set(text) <= _HEX:  # a version id is 12 hex digits; a ref name need not look
        for entry in context_versions(root, config, limit=500):
            if entry.version.startswith(text):
                return entry.commit
    commit = head_commit(root, text)
    if commit is None:
        raise LoomError(f"{shown(text)}: no such context version, commit or ref (see loomtui context versions)")
    return commit


# -- history -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionEntry:
    """The context as of one commit that changed a repository source."""

    version: str
    commit: str
    time: int
    subject: str
    changed: tuple[str, ...]


def context_versions(root: Path, config: ContextConfig, *, limit: int = 20) -> list[VersionEntry]:
    """The newest `limit` commits that changed a source (or loomtui's config), with the context version at
    each, as it was then: the sources that commit's own `.loom/loom.yaml` named (the defaults before there
    was one). Recomputed with today's config, a version differed from the one a sandbox started with, and
    `context diff` could not find the version `context drift` named.

    Outside layers are as configured now (their own pinned refs), so their version is folded into every
    entry. Empty for a repository without commits.
    """
    if head_commit(root) is None:
        return []
    # -z: names as they are (without it git quotes a name with a quote, a tab or non-ASCII in it)
    watched = (*config.sources, *ContextConfig().sources, CONFIG_PATH)
    out = git_text(root, "log", f"-n{limit}", "--format=%x1e%H%x1f%ct%x1f%s", "--name-only", "-z", "--",
                   *git_pathspecs(list(dict.fromkeys(watched))))
    outside = [(s.name, s.version) for s in load_context_layers_only(root, config)]
    configs: dict[str | None, ContextConfig] = {None: ContextConfig()}
    entries: list[VersionEntry] = []
    for record in out.split("\x1e"):
        if not record.strip():
            continue
        head, _, names = record.partition("\0")
        commit, when, subject = (head.split("\x1f") + ["", ""])[:3]
        tree = GitTree(root, commit, commit)
        try:
            files = tree.listing()
            sources = _sources_then(tree, files.get(CONFIG_PATH), configs, config).sources
        finally:
            tree.close()
        spec = _spec(sources)
        # The config too: a commit that only named other sources was listed with "[]" for what it changed.
        changed = tuple(n for n in names.lstrip("\n").split("\0") if n and (spec.match_file(n) or n == CONFIG_PATH))
        # The files a read of that commit takes (`_read_layer`): not those in a directory a file glob matched
        # (`docs/conventions/odd.md/`), which listed a version no `show` or `drift` ever named.
        pairs = [(REPO_LAYER, p, b or "") for p, b in sorted(files.items())
                 if spec.match_file(p) and not name_problem(p) and _matched_directory(spec, p) is None]
        version = _version_of_layers(outside, pairs)
        entries.append(VersionEntry(version, commit, int(when or 0), subject, changed))
    return entries


def _sources_then(tree: GitTree, blob: str | None, seen: dict[str | None, ContextConfig],
                  today: ContextConfig) -> ContextConfig:
    """The context config a commit's own loom.yaml (blob `blob`) gave; today's where it cannot be read."""
    if blob not in seen:
        from loomtui.config import parse_config

        try:
            data, _size = tree.read_blob(str(blob), 1 << 20)
            seen[blob] = parse_config(data.decode("utf-8", "replace"), CONFIG_PATH).context
        except (OSError, LoomError):
            seen[blob] = today
    return seen[blob]


def config_at(root: Path, commit: str | None, today: ContextConfig) -> ContextConfig:
    """The context config as of `commit` (its own `.loom/loom.yaml`; the defaults before it had one; today's
    where it cannot be read); `today` for the working tree (None)."""
    if commit is None:
        return today
    tree = GitTree(root, commit, commit)
    try:
        return _sources_then(tree, tree.listing().get(CONFIG_PATH), {None: ContextConfig()}, today)
    finally:
        tree.close()


def load_context_layers_only(root: Path, config: ContextConfig) -> list[LayerState]:
    """The outside layers' states (where, commit, version) without reading the repository."""
    states: list[LayerState] = []
    problems: list[str] = []
    for layer in config.layers:
        tree, state = _outside_tree(root, layer, problems)
        if tree is None:
            continue
        try:
            spec = _spec(layer.sources)
            listing = tree.listing()
            pairs = []
            for path in sorted(p for p in listing if spec.match_file(p)):
                blob = listing[path]
                if blob is None:
                    try:
                        _, blob, _ = tree.read(path, 0)
                    except OSError:
                        continue
                pairs.append((layer.name, path, blob))
            states.append(replace(state, version=_version(pairs), files=len(pairs)))
        except LoomError:
            continue
    return states


def _version_of_layers(outside: Sequence[tuple[str, str]], repo_pairs: Sequence[tuple[str, str, str]]) -> str:
    """The context version: each outside layer's own version, then the repository's files."""
    digest = hashlib.sha256()
    for name, layer_version in outside:
        digest.update(f"{name}\0{layer_version}\n".encode())
    digest.update(_version(repo_pairs).encode())
    return digest.hexdigest()[:12]


# -- mentions ------------------------------------------------------------------------------------------


_COMPOUND = re.compile(r"^_?[a-z][a-z0-9]*(?:_[a-z0-9]+)+$|^_?[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+$")
_BUILTINS = frozenset(dir(builtins))
_IDENT_PART = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _is_identifier_path(text: str) -> bool:
    return all(part and part[0] not in "0123456789" and set(part) <= _IDENT_PART for part in text.split("."))


class _Resolver:
    def __init__(self, index: RepoIndex | None, files: frozenset[str]) -> None:
        self.regions = index.regions if index is not None else {}
        self.indexed = frozenset(index.files) if index is not None else frozenset()
        self.files = files | self.indexed
        self.dirs = {str(parent) for f in self.files for parent in PurePosixPath(f).parents if str(parent) != "."}
        self.by_qualname: dict[str, list[str]] = {}
        for region in self.regions.values():
            if region.qualname:
                self.by_qualname.setdefault(region.qualname, []).append(region.id)

    def resolve(self, ref: str) -> Mention | None:
        if "::" in ref:
            path = ref.partition("::")[0]
            if path not in self.files:
                return Mention(ref, "symbol", ref, False)
            return Mention(ref, "symbol", ref, ref in self.regions if path in self.indexed else None)
        if "/" in ref:
            if _GLOB_CHARS & set(ref) or ref.startswith(("/", "~", "http")):
                return None
            path = ref.removeprefix("./").rstrip("/")
            return Mention(ref, "path", path, path in self.files or path in self.dirs)
        if ref in self.files:
            return Mention(ref, "path", ref, True)
        if not _is_identifier_path(ref):
            return None
        parts = ref.split(".")
        for i in range(len(parts), 0, -1):
            module = "/".join(parts[:i])
            for candidate in (module + ".py", module + "/__init__.py"):
                if candidate not in self.files:
                    continue
                rest = ".".join(parts[i:])
                if not rest:
                    return Mention(ref, "path", candidate, True)
                region = f"{candidate}::{rest}"
                if region in self.regions:
                    return Mention(ref, "symbol", region, True)
                if candidate not in self.indexed:
                    return Mention(ref, "symbol", region, None)
                # A name re-exported by a package: defined somewhere below it.
                package = candidate.rsplit("/", 1)[0] + "/" if "/" in candidate else ""
                for other in self.by_qualname.get(rest, ()):
                    if other.startswith(package):
                        return Mention(ref, "symbol", other, True)
                return Mention(ref, "symbol", region, False)
        if module_dir := next((d for d in (parts[0],) if d in self.dirs), None):
            return Mention(ref, "path", module_dir, True) if len(parts) == 1 else None
        found = self.by_qualname.get(ref)
        if found:
            return Mention(ref, "symbol", min(found), True)
        if self.regions and len(parts) == 1 and _COMPOUND.match(ref) and ref not in _BUILTINS:
            # `to_minor_units`, `InvoiceCalculator`: a name of this code base that is gone (an
            # outside name is written with its module, `decimal.Decimal`, and not checked).
            return Mention(ref, "symbol", ref, False)
        return None


def resolve_mentions(context: Context, index: RepoIndex | None) -> Context:
    """The context with each section's code spans matched against the region index.

    A path, `path::qualname`, or dotted name rooted in one of the repository's
    modules is checked (exists True/False); a bare name is kept only when some
    region has it (a name like `Decimal.quantize` may live outside the repository).
    """
    resolver = _Resolver(index, context.repo_files)
    sections: list[Section] = []
    for section in context.sections:
        mentions = []
        if section.layer == REPO_LAYER:
            for ref in section.refs:
                mention = resolver.resolve(ref)
                if mention is not None:
                    mentions.append(mention)
        sections.append(replace(section, mentions=tuple(mentions)))
    context.sections = sections
    context.cache.clear()
    return context
