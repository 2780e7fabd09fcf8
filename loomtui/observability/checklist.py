"""The article's infrastructure audit: its ten items answered for this repository from evidence.

Each item is `yes`, `partly` or `no`, with what was looked at (files, counts, the
store's records, the audit log, git history) and the next step as a loomtui command
or a config change (`checklist_items` gathers the evidence and answers each). The
score counts yes as 1 and partly as 0.5; the verdict is the article's ("7 or more ...
under 4 ..."). With an org size, the article's minimum viable control plane for its
band and what this repository lacks for it.

`checklist()` reads everything afresh. `cached_checklist()` is the app header's
variant: it answers again only when the store, the audit log, the config, the policy
or HEAD changed, or a minute has passed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from loomtui.errors import LoomError, plural
from loomtui.observability.checklist_items import CHECKS, NO, PARTLY, UNKNOWN, YES, Answer, Evidence

if TYPE_CHECKING:
    from loomtui.workspace import Workspace

__all__ = ["ANSWERS", "BANDS", "BandReport", "Checklist", "Item", "band_for", "cached_checklist", "checklist",
           "verdict"]

ANSWERS: Final = {YES: 1.0, PARTLY: 0.5, NO: 0.0, UNKNOWN: 0.0}
"""Points per answer; an item that could not be checked scores nothing and makes the score incomplete."""

QUESTIONS: Final = (
    ("Execution", "Do agents have isolated environments that don't interfere with each other or production?"),
    ("Context", "Is there one canonical source of org-wide coding conventions that all agent sessions can access?"),
    ("Context", "Are your architectural decision records up-to-date and in a format agents can consume?"),
    ("Eval", "Do you have a test suite that runs in under 5 minutes and covers your critical paths?"),
    ("Eval", "Is there any automated behavioral verification beyond unit tests (integration tests, contract "
             "tests)?"),
    ("Governance", "Is your AI governance policy written down? Is it enforced programmatically or by convention?"),
    ("Governance", "Do you have risk-based PR routing? Do high-risk AI changes go to appropriate reviewers "
                   "automatically?"),
    ("Governance", "Do you have an audit trail for AI-generated changes: what the agent did, what gates it "
                   "passed, who reviewed it?"),
    ("Coordination", "Can two agents work on adjacent parts of your codebase simultaneously without discovering "
                     "conflicts at merge time?"),
    ("Observability", "Can you tell, right now, which PRs this week were AI-generated and what their acceptance "
                      "rate was?"),
)
"""The article's ten questions, in its order, with its area tags."""


@dataclass(frozen=True)
class Item:
    """One of the ten, answered: `evidence` is what was looked at, `next_step` what to do ('' at yes)."""

    number: int
    area: str
    question: str
    answer: str
    evidence: tuple[str, ...]
    next_step: str = ""
    facts: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def points(self) -> float:
        return ANSWERS[self.answer]

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "area": self.area, "question": self.question, "answer": self.answer,
                "points": self.points, "evidence": list(self.evidence), "next_step": self.next_step,
                "facts": self.facts}


@dataclass(frozen=True)
class Checklist:
    """The ten items, the score (yes 1, partly 0.5), the article's verdict, and the org-size band if asked."""

    root: str
    items: tuple[Item, ...]
    score: float
    verdict: str
    band: BandReport | None = None
    elapsed_s: float = 0.0
    computed_at: float = 0.0

    @property
    def unknown(self) -> tuple[Item, ...]:
        """Items whose evidence could not be read: until they are, the score is a floor, not an answer."""
        return tuple(item for item in self.items if item.answer == UNKNOWN)

    @property
    def header(self) -> str:
        """A few characters for the app's header: `checklist 7.5/10` (`7.5/10?` while an item is unknown)."""
        return f"checklist {self.score:g}/10{'?' if self.unknown else ''}"

    def gaps(self) -> tuple[Item, ...]:
        return tuple(item for item in self.items if item.answer != YES)

    def as_dict(self) -> dict[str, Any]:
        return {"repo": self.root, "score": self.score, "max": len(self.items), "verdict": self.verdict,
                "unknown": [item.number for item in self.unknown],
                "items": [item.as_dict() for item in self.items],
                "org_size": None if self.band is None else self.band.as_dict(),
                "elapsed_s": round(self.elapsed_s, 3)}


def verdict(score: float, unknown: int = 0) -> str:
    """The article's verdict for a score (its words at 7+ and under 4; ours in between, where it has none);
    none while `unknown` items could not be checked, since the score is then only a floor."""
    if unknown:
        return (f"no verdict: {unknown} item{'s' if unknown > 1 else ''} could not be checked; fix the error "
                "they name, then run again")
    if score >= 7:
        return "you're in better shape than most orgs: focus on the gaps"
    if score < 4:
        return "the priority is the unchecked items, not the build-vs-buy question"
    return ("partway there (the article has no words between 4 and 7): close the items answered no, then the "
            "partial ones, before weighing build, buy or hybrid")


def checklist(workspace: Workspace, org_size: int | None = None, *, now: float | None = None) -> Checklist:
    """Answer the ten items for `workspace` (and the minimum viable control plane for `org_size`)."""
    started = time.perf_counter()
    evidence = Evidence(workspace, time.time() if now is None else now)
    items = tuple(_answer(number, check, evidence) for number, check in enumerate(CHECKS, start=1))
    score = sum(item.points for item in items)
    band = None if org_size is None else band_report(org_size, items)
    unknown = sum(1 for item in items if item.answer == UNKNOWN)
    return Checklist(str(workspace.root), items, score, verdict(score, unknown), band,
                     time.perf_counter() - started, evidence.now)


def _answer(number: int, check: Callable[[Evidence], Answer], evidence: Evidence) -> Item:
    area, question = QUESTIONS[number - 1]
    try:
        answer, seen, step, facts = check(evidence)
    except LoomError as exc:  # one unreadable input answers its own item, never the whole checklist
        answer, seen, step, facts = UNKNOWN, [f"could not check: {exc}"], "fix the error above, then run again", {}
    return Item(number, area, question, answer, tuple(seen), "" if answer == YES else step, facts)


# -- the app's header ----------------------------------------------------------------------------

CACHE_MAX_AGE_S: Final = 60.0
_CACHE: dict[tuple[str, int | None], tuple[tuple[Any, ...], Checklist]] = {}
_CACHE_LOCK = threading.Lock()


def cached_checklist(workspace: Workspace, org_size: int | None = None, *, fresh: bool = False) -> Checklist:
    """`checklist` for the app's header: the last answer while nothing it reads has changed (`fresh`:
    answered afresh all the same, and kept for the next call).

    The key costs a few stat calls and one store query (no git, no parsing): the
    store's newest event id (every store write has one), the audit log's size, and the
    config, policy, HEAD and conventions files' mtimes. Anything else (a new ADR, a
    CI file, the week's window moving on) shows within CACHE_MAX_AGE_S. Call it off
    the UI thread all the same: a miss costs a whole checklist.
    """
    key = _cache_key(workspace)
    slot = (str(workspace.root), org_size)
    with _CACHE_LOCK:
        found = _CACHE.get(slot)
    if not fresh and found is not None and found[0] == key and time.time() - found[1].computed_at < CACHE_MAX_AGE_S:
        return found[1]
    result = checklist(workspace, org_size)
    with _CACHE_LOCK:
        _CACHE[slot] = (key, result)
    return result


def _cache_key(workspace: Workspace) -> tuple[Any, ...]:
    def stamp(path: Path) -> tuple[int, int]:
        try:
            info = path.stat()
        except OSError:
            return (0, 0)
        return (info.st_mtime_ns, info.st_size)

    root = workspace.root
    return (workspace.store.last_event_id(), stamp(workspace.audit.path), stamp(root / ".loom" / "loom.yaml"),
            stamp(root / ".loom" / "policy.yaml"), stamp(workspace.paths.common_dir / "HEAD"),
            stamp(root / "AGENTS.md"), stamp(root / "CLAUDE.md"))


# -- the minimum viable control plane by org size --------------------------------------------------
#
# Bands include their lower edge: 5-30 is 5 to 29 engineers (under 5 gets it too), 30-200
# is 30 to 199, 200-1000 is 200 to 999, 1000+ is 1000 and up. A band needs its own list and
# every smaller band's (the article calls the smallest "a foundation"). A requirement is
# met, lacking, or not something a repository can show (people: `met` None).


@dataclass(frozen=True)
class Band:
    low: int
    name: str
    title: str
    words: str
    """The article's description of the band, shortened."""


BANDS: Final = (
    Band(1, "5-30", "Shared context file + CI gates",
         "One shared CLAUDE.md covering org conventions, one CI workflow that runs lint/type/test on AI-tagged "
         "PRs, and a simple risk-routing rule. It's not a control plane; it's a foundation."),
    Band(30, "30-200", "Context layer + governance policy + eval harness",
         "Shared context infrastructure (a maintained repository with versioning), a governance policy codified "
         "in CI config (not a doc), a two-gate eval harness (deterministic + behavioral), and at least one "
         "engineer who owns the AI coordination layer."),
    Band(200, "200-1000", "Full five-layer architecture",
         "Layers 1-5 all need to be operational, probably with a dedicated AI platform team."),
    Band(1000, "1000+", "Organizational-scale architecture",
         "The control plane is core infrastructure: multiple context layers (org-wide, business-unit-wide, "
         "team-level) and more complex governance (multiple regulatory regimes, global teams)."),
)


@dataclass(frozen=True)
class Requirement:
    """One thing a band needs: `met` is None when a repository cannot show it."""

    band: str
    text: str
    items: tuple[int, ...]
    met: bool | None
    evidence: str
    next_step: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"band": self.band, "text": self.text, "items": list(self.items), "met": self.met,
                "evidence": self.evidence, "next_step": "" if self.met else self.next_step}


@dataclass(frozen=True)
class BandReport:
    org_size: int
    band: Band
    requirements: tuple[Requirement, ...]

    @property
    def lacking(self) -> tuple[Requirement, ...]:
        return tuple(r for r in self.requirements if r.met is False)

    def as_dict(self) -> dict[str, Any]:
        return {"org_size": self.org_size, "band": self.band.name, "title": self.band.title,
                "article": self.band.words, "requirements": [r.as_dict() for r in self.requirements],
                "lacking": [r.text for r in self.lacking]}

    def lines(self) -> list[str]:
        """The band, then each requirement marked have / LACKS / ?, with the next step where lacking."""
        under = " (under 5: the smallest band applies)" if self.org_size < 5 else ""
        out = [f"org size {self.org_size}: the {self.band.name} band{under}: {self.band.title}",
               f"  the playbook: {self.band.words}"]
        for req in self.requirements:
            mark = "have " if req.met else "?    " if req.met is None else "LACKS"
            tags = ([f"from {req.band}"] if req.band != self.band.name else []) + (
                [f"item{'s' if len(req.items) > 1 else ''} {', '.join(map(str, req.items))}"] if req.items else [])
            out.append(f"  {mark} {req.text}{' (' + '; '.join(tags) + ')' if tags else ''}: {req.evidence}")
            if req.met is False and req.next_step:
                out.append(f"        next: {req.next_step}")
        lacking = self.lacking
        out.append(f"  lacks {len(lacking)} of {len(self.requirements)} for {self.band.name}"
                   + (": " + "; ".join(r.text for r in lacking) if lacking else ""))
        return out


def band_for(org_size: int) -> Band:
    """The article's band for `org_size` engineers (at least 1)."""
    if org_size < 1:
        raise ValueError(f"an org size is at least 1 (got {org_size})")
    return [band for band in BANDS if org_size >= band.low][-1]


Judge: TypeAlias = Callable[[dict[int, Item]], tuple[bool | None, str, str]]
"""A requirement's check over the answered items: (met, evidence, next step)."""


def _all_yes(*numbers: int) -> Judge:
    def judge(items: dict[int, Item]) -> tuple[bool | None, str, str]:
        short = [items[n] for n in numbers if items[n].answer != YES]
        if not short:
            return True, ", ".join(f"item {n} yes" for n in numbers), ""
        return False, "; ".join(f"item {i.number} {i.answer}" for i in short), short[0].next_step
    return judge


def _conventions_file(items: dict[int, Item]) -> tuple[bool | None, str, str]:
    files = items[2].facts.get("files") or []
    if not files:
        return False, "no conventions file in context.sources", items[2].next_step
    if items[2].answer != YES:  # the file is there, but not in every agent's context (item 2 says whose)
        return False, f"{', '.join(files[:3])}, but item 2 {items[2].answer}: not every agent got it", \
            items[2].next_step
    return True, f"{', '.join(files[:3])} in every agent's context", ""


def _ci_gates(items: dict[int, Item]) -> tuple[bool | None, str, str]:
    ci, gates = items[6].facts.get("ci") or [], items[4].facts.get("gates") or []
    if ci and gates:
        return True, f"{', '.join(ci)} calls `loomtui gate`; gate 1 runs {', '.join(gates)}", ""
    if not gates:
        return False, "no gate-1 checks (lint/type/test) in .loom/loom.yaml", items[4].next_step
    return False, "no CI workflow calls `loomtui gate`", (
        "add a CI job running your checks and `loomtui gate --format markdown` on pull requests")


def _risk_rule(items: dict[int, Item]) -> tuple[bool | None, str, str]:
    routed = int(items[7].facts.get("routed") or 0)
    if routed:
        return True, f"{plural(routed, 'rule')} {'routes' if routed == 1 else 'route'} changes to reviewers", ""
    return False, "no rule routes a change to reviewers", items[7].next_step


def _owner(items: dict[int, Item]) -> tuple[bool | None, str, str]:
    owners = items[6].facts.get("owners") or []
    if owners:
        return True, f"CODEOWNERS names {', '.join(owners)} for the policy", ""
    return None, "not shown by the repository (a CODEOWNERS line for .loom/ would name them)", ""


def _team(_items: dict[int, Item]) -> tuple[bool | None, str, str]:
    return None, "a team is not something a repository shows", ""


def _layers(items: dict[int, Item]) -> tuple[bool | None, str, str]:
    layers = int(items[2].facts.get("outside_layers") or 0)
    if layers >= 2:
        return True, f"{layers} context layers outside the repository, then the repository's own", ""
    return False, f"{plural(layers, 'context layer')} outside the repository", (
        "add org-wide and business-unit layers to `context.layers` in .loom/loom.yaml "
        "(`{name: org, repo: ../org-conventions, ref: v3}`)")


def _complex_governance(items: dict[int, Item]) -> tuple[bool | None, str, str]:
    signed, anchored = bool(items[6].facts.get("signed")), int(items[8].facts.get("anchored") or 0)
    if signed and anchored:
        anchor = "anchors" if anchored == 1 else "anchor"
        return True, f"decisions signed (policy), {plural(anchored, 'merge')} {anchor} the audit log", ""
    missing = ([] if signed else ["decisions need no signature"]) + (
        [] if anchored else ["no merge anchors the audit log (Loom-Audit)"])
    return False, "; ".join(missing), ("`decisions: {require_signature: true}` in .loom/policy.yaml with "
                                       ".loom/allowed_signers, and merge through `loomtui sandbox merge`")


_REQUIREMENTS: Final[dict[str, tuple[tuple[str, tuple[int, ...], Judge], ...]]] = {
    "5-30": (
        ("one shared conventions file all agents get", (2,), _conventions_file),
        ("one CI workflow running lint/type/test and the policy on agent PRs", (4, 6), _ci_gates),
        ("a simple risk-routing rule (core services need senior review)", (7,), _risk_rule),
    ),
    "30-200": (
        ("shared context infrastructure, versioned, reaching every session", (2, 3), _all_yes(2, 3)),
        ("a governance policy codified in CI config, not a doc", (6,), _all_yes(6)),
        ("a two-gate eval harness (deterministic + behavioural)", (4, 5), _all_yes(4, 5)),
        ("an engineer who owns the AI coordination layer", (), _owner),
    ),
    "200-1000": (
        ("layer 1 execution operational", (1,), _all_yes(1)),
        ("layer 2 knowledge operational", (2, 3), _all_yes(2, 3)),
        ("layer 3 guardrails operational", (4, 5), _all_yes(4, 5)),
        ("layer 4 governance operational", (6, 7, 8), _all_yes(6, 7, 8)),
        ("layer 5 coordination operational", (9,), _all_yes(9)),
        ("a dedicated AI platform team", (), _team),
    ),
    "1000+": (
        ("multiple context layers (org-wide, business-unit, team)", (2,), _layers),
        ("governance for many regimes and teams: signed decisions, an anchored audit log", (6, 8),
         _complex_governance),
        ("observability at org scale: agent-made share and acceptance known", (10,), _all_yes(10)),
    ),
}


def band_report(org_size: int, items: Sequence[Item]) -> BandReport:
    """What `org_size`'s band needs (its own list and the smaller bands'), each judged from the items."""
    band = band_for(org_size)
    by_number = {item.number: item for item in items}
    requirements = []
    for each in BANDS:
        for text, numbers, judge in _REQUIREMENTS[each.name]:
            unknown = [n for n in numbers if by_number[n].answer == UNKNOWN]
            if unknown:  # neither had nor lacking until its items can be read
                met, evidence, step = None, (f"item{'s' if len(unknown) > 1 else ''} {', '.join(map(str, unknown))} "
                                             "could not be checked"), ""
            else:
                met, evidence, step = judge(by_number)
            requirements.append(Requirement(each.name, text, numbers, met, evidence, step))
        if each is band:
            break
    return BandReport(org_size, band, tuple(requirements))
