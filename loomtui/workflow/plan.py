"""A plan of agent tasks, and the order the repository's code says they may run in.

A plan file (`.loom/plan.yaml`) lists tasks: what each agent is to do, the
claims it will hold, and the tasks it is written to wait on (`after:`).
`schedule` adds the order the code itself asks for: two tasks that claim
overlapping regions never run at once, and when one task's regions use the
other's, the callee's change goes first (the caller's with `order:
caller-first`). Every edge says why it is there; the waves are the tasks that
may run side by side.

Pure: no store, no subprocess. The region relations come in as two callables;
`coordinator_relations` builds them from a real Coordinator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import combinations
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final

from loomtui.coordination.claims import Coordinator
from loomtui.coordination.index import DEPENDENCY_KINDS, RepoIndex
from loomtui.coordination.regions import named_once, overlaps
from loomtui.errors import ConfigError, LoomError, shown
from loomtui.yamlcheck import ConfigErrors, Problems, Value, closest, compose, read_text

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "EDGE_KINDS",
    "MAX_NAME_LENGTH",
    "ORDERS",
    "PLAN_PATH",
    "Depends",
    "Edge",
    "Plan",
    "PlanTask",
    "RegionsOf",
    "Schedule",
    "coordinator_relations",
    "claim_problems",
    "load_plan",
    "load_plan_checked",
    "parse_plan",
    "parse_plan_checked",
    "schedule",
]

PLAN_PATH: Final = ".loom/plan.yaml"
"""Where a repository's plan usually lives, relative to its root."""

ORDERS: Final = ("callee-first", "caller-first")
"""Whose change goes first when one task's regions use another's; the first is the default."""

EDGE_KINDS: Final = ("after", "overlap", "dependency")
"""Why one task waits on another: written in the plan, overlapping claims, a dependency."""

MAX_NAME_LENGTH: Final = 40
_NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]*")
_TASK_KEYS: Final = ("name", "task", "runtime", "script", "claims", "after")

RegionsOf = Callable[[str], list[str]]
"""One claim target -> the region ids it names (raises LoomError for an unknown target)."""

Depends = Callable[[str, str], str | None]
"""(a, b) -> how region a uses region b (calls, imports, inherits), or None when it does not."""


# -- the plan ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanTask:
    """One agent task of a plan; `line` is where its entry starts in the plan file."""

    name: str
    task: str
    runtime: str
    script: str | None
    claims: tuple[str, ...]
    after: tuple[str, ...]
    line: int
    runtime_line: int = field(default=0, compare=False)
    """Where its `runtime:` and `script:` are written, and each claim (0: not read from a file)."""
    script_line: int = field(default=0, compare=False)
    claim_lines: tuple[int, ...] = field(default=(), compare=False)

    def claims_with_lines(self) -> list[tuple[str, int]]:
        """Each claim target with the line it is written on (the task's own where not known)."""
        return [(target, self.claim_lines[n] if n < len(self.claim_lines) else self.line)
                for n, target in enumerate(self.claims)]


@dataclass(frozen=True)
class Plan:
    """A validated plan: its tasks in file order, and `order`, one of ORDERS."""

    path: str
    tasks: tuple[PlanTask, ...]
    order: str


def load_plan(root: Path, relative: str) -> Plan:
    """Read and validate `root/relative`; errors name `relative`. Raises ConfigError."""
    return parse_plan(read_text(root / relative, relative), relative)


def parse_plan(text: str, path: str) -> Plan:
    """Validate plan `text`; `path` names the file in errors (`path:line: ...`). Raises ConfigError (every
    problem: ConfigErrors)."""
    plan, problems = parse_plan_checked(text, path)
    raise_problems(problems)
    return plan


def load_plan_checked(root: Path, relative: str) -> tuple[Plan, list[ConfigError]]:
    """`root/relative` read: the tasks that parse, and every problem of the others (for the checks that follow
    to add theirs); raises ConfigError only where no task can be read (not YAML, no `tasks:`)."""
    return parse_plan_checked(read_text(root / relative, relative), relative)


def parse_plan_checked(text: str, path: str) -> tuple[Plan, list[ConfigError]]:
    """As `load_plan_checked`, of `text`."""
    root = compose(text, path)
    if root is None:
        raise ConfigError(path, 1, "the plan is empty (it needs a `tasks:` list)")
    top = root.as_mapping(known=("version", "order", "tasks"), required=("tasks",))
    version = top.get("version")
    if version is not None and version.as_int() != 1:
        raise version.error(f"unsupported version {version.as_int()} (only 1 is supported)")
    order_value = top.get("order")
    order = order_value.as_choice(ORDERS) if order_value else ORDERS[0]
    items = top["tasks"].as_list()
    if not items:
        raise top["tasks"].error("must list at least one task")
    # Every task's problems, not the first alone (a plan of five mistakes took five runs to find them).
    problems = Problems()
    tasks, written, names = _parse_tasks(items, problems)
    _check_after(tasks, written, names, path, problems)
    return Plan(path=path, tasks=tuple(tasks), order=order), problems.errors


def claim_problems(plan: Plan, regions_of: RegionsOf) -> list[ConfigError]:
    """Each task's claim targets that name nothing, every one at its own line (`schedule` stops at the first)."""
    problems: list[ConfigError] = []
    for task in plan.tasks:
        for target, line in task.claims_with_lines():
            try:
                regions_of(target)
            except LoomError as exc:
                problems.append(ConfigError(plan.path, line, f"task {task.name}: {exc}"))
    return problems


def raise_problems(errors: Sequence[ConfigError]) -> None:
    """Nothing, or the one error, or all of them in line order (`ConfigErrors`)."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(sorted(errors, key=lambda error: error.line or 0))


def _parse_tasks(items: list[Value], problems: Problems) -> tuple[list[PlanTask], dict[tuple[str, str], Value],
                                                                    set[str]]:
    """The tasks (one with a problem left out, its problem kept), each written `after:` entry as (task, waits
    on) -> the entry's node, and every task name read (a task left out for its own problem is no unknown one)."""
    tasks: list[PlanTask] = []
    first_line: dict[str, int] = {}
    written: dict[tuple[str, str], Value] = {}
    for item in items:
        task: PlanTask | None = problems.read(partial(_parse_task, item, first_line, written), None)
        if task is not None:
            tasks.append(task)
    return tasks, written, set(first_line)


def _parse_task(item: Value, first_line: dict[str, int], written: dict[tuple[str, str], Value]) -> PlanTask:
    fields = item.as_mapping(known=_TASK_KEYS, required=("name", "task", "runtime"))
    name_value = fields["name"]
    name = _task_name(name_value)
    if name in first_line:
        raise name_value.error(f"duplicate task name {name!r} (first defined on line {first_line[name]})")
    first_line[name] = name_value.line
    after: list[str] = []
    for entry in fields["after"].as_list() if "after" in fields else ():
        other = entry.as_str(non_empty=True)
        if other not in after:  # listing a task twice says nothing more
            after.append(other)
            written[(name, other)] = entry
    script = fields.get("script")
    claims = fields.get("claims")
    return PlanTask(
        name=name,
        task=fields["task"].as_str(non_empty=True),
        runtime=fields["runtime"].as_str(non_empty=True),
        script=_script_path(script) if script else None,
        claims=claims.as_str_list(items_non_empty=True) if claims else (),
        after=tuple(after),
        line=item.line,
        runtime_line=fields["runtime"].line,
        script_line=script.line if script else 0,
        claim_lines=tuple(entry.line for entry in claims.as_list()) if claims else (),
    )


def _task_name(value: Value) -> str:
    name = value.as_str(non_empty=True)
    if not _NAME_RE.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise value.error(f"invalid task name {name!r} (use lowercase letters, digits and '-', starting "
                          f"with a letter or digit, at most {MAX_NAME_LENGTH} characters)")
    return name


def _script_path(value: Value) -> str:
    script = value.as_str(non_empty=True)
    posix = PurePosixPath(script.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts:
        raise value.error(f"must be a path inside the repository, relative to its root (got {script!r})")
    return script


def _check_after(tasks: Sequence[PlanTask], written: dict[tuple[str, str], Value], read: set[str], path: str,
                 problems: Problems) -> None:
    for (name, other), entry in written.items():
        if other == name:
            problems.errors.append(entry.error(f"task {name!r} cannot wait on itself"))
        elif other not in read:
            guess = closest(other, sorted(read))
            problems.errors.append(entry.error(f"unknown task {other!r}"
                                               + (f" (did you mean {guess!r}?)" if guess else "")))
    # Among the waits said right (a self-wait or an unknown task is said above): a cycle was found only once
    # those were fixed, one run later, though every problem is said at once.
    cycle = _waits_on_cycle(tasks, read)
    if cycle is not None:
        # The entry that starts the cycle: `first` lists `second` under after:.
        line = written[(cycle[0], cycle[1 % len(cycle)])].line
        problems.errors.append(ConfigError(path, line, _cycle_message(cycle)))


def _waits_on_cycle(tasks: Sequence[PlanTask], known: set[str] | None = None) -> list[str] | None:
    """The tasks of one cycle of `after:` (each waits on the next), from the one written first; with `known`,
    only among waits on another task it names."""
    import networkx as nx  # 0.2 s to import: only where a graph is built

    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(task.name for task in tasks)
    graph.add_edges_from((task.name, other) for task in tasks for other in task.after
                         if known is None or (other != task.name and other in known))
    try:
        found = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return None
    cycle = [str(edge[0]) for edge in found]
    position = {task.name: index for index, task in enumerate(tasks)}
    start = min(range(len(cycle)), key=lambda i: position.get(cycle[i], len(position)))
    return cycle[start:] + cycle[:start]


def _cycle_message(cycle: Sequence[str]) -> str:
    return f"tasks {' -> '.join([*cycle, cycle[0]])} form a cycle (each waits on the next through `after:`)"


# -- the schedule ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """Task `after` may start only once task `before` is done; `kind` is one of EDGE_KINDS."""

    before: str
    after: str
    reason: str
    kind: str

    def as_dict(self) -> dict[str, str]:
        return {"before": self.before, "after": self.after, "kind": self.kind, "reason": self.reason}


@dataclass(frozen=True)
class Schedule:
    """A plan's tasks ordered: the edges between them, and the waves that may run side by side."""

    plan: Plan
    edges: tuple[Edge, ...]
    waves: tuple[tuple[str, ...], ...]

    def waits_on(self, name: str) -> tuple[str, ...]:
        """Every task that must be done before `name` (directly or through another), in file order."""
        if name not in {task.name for task in self.plan.tasks}:
            raise LoomError(f"{shown(name)}: no such task in {shown(self.plan.path)}")
        before: dict[str, list[str]] = {}
        for edge in self.edges:
            before.setdefault(edge.after, []).append(edge.before)
        seen: set[str] = set()
        pending = [name]
        while pending:
            for other in before.get(pending.pop(), ()):
                if other not in seen:
                    seen.add(other)
                    pending.append(other)
        return tuple(task.name for task in self.plan.tasks if task.name in seen)

    def as_dict(self) -> dict[str, object]:
        """The schedule as plain JSON-ready data (`--json`)."""
        return {
            "plan": self.plan.path,
            "order": self.plan.order,
            "tasks": [
                {"name": task.name, "task": task.task, "runtime": task.runtime, "script": task.script,
                 "claims": list(task.claims), "after": list(task.after), "line": task.line,
                 "waits_on": list(self.waits_on(task.name))}
                for task in self.plan.tasks
            ],
            "edges": [edge.as_dict() for edge in self.edges],
            "waves": [list(wave) for wave in self.waves],
        }


@dataclass(frozen=True)
class _Candidate:
    """An edge the code asks for, before it is checked against the edges already in place."""

    edge: Edge
    by_dependency: bool  # directed by who uses whom, not merely by file order
    overlap: tuple[str, str] | None  # the first pair of overlapping regions, if any


def schedule(plan: Plan, regions_of: RegionsOf, depends: Depends) -> Schedule:
    """Order `plan`'s tasks: its written `after:` edges, plus the edges its claims imply.

    A pair of tasks not already ordered gets an `overlap` edge when their regions
    overlap (file order, unless a dependency directs it) or else a `dependency`
    edge when one's regions use the other's (callee first, or caller first per
    `plan.order`). An implicit edge that would contradict the order already in
    place is skipped: the tasks are ordered already, the other way. Raises
    ConfigError naming the task's line for a claim target `regions_of` refuses.
    """
    import networkx as nx  # 0.2 s to import: only where a graph is built

    position = {task.name: index for index, task in enumerate(plan.tasks)}
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(position)
    edges: list[Edge] = []
    for task in plan.tasks:
        for other in task.after:
            if other not in position:  # parse_plan refuses this; a plan built by hand may not
                raise ConfigError(plan.path, task.line, f"task {task.name}: waits on unknown task {shown(other)}")
            graph.add_edge(other, task.name)
            edges.append(Edge(other, task.name, f"{task.name} waits on {other}, as the plan says", "after"))
    raise_problems(claim_problems(plan, regions_of))  # every target naming nothing, not the first
    regions = {task.name: _task_regions(plan, task, regions_of) for task in plan.tasks}
    candidates = [found for first, second in combinations(plan.tasks, 2)
                  if (found := _candidate(plan.order, first, second, regions, depends)) is not None]
    # Edges a dependency directs go in first: a pair ordered by file order alone then gives way to them.
    for candidate in sorted(candidates, key=lambda c: not c.by_dependency):
        edge = candidate.edge
        forward, backward = nx.has_path(graph, edge.before, edge.after), nx.has_path(graph, edge.after, edge.before)
        if forward and backward and candidate.overlap is not None:
            raise ConfigError(plan.path, plan.tasks[position[edge.before]].line,
                              f"tasks {edge.before} and {edge.after} claim overlapping regions "
                              f"{_pair_text(candidate.overlap)} but the plan's `after:` orders them both ways")
        if not (forward or backward):  # never repeat an order already implied, never contradict one
            graph.add_edge(edge.before, edge.after)
            edges.append(edge)
    cycle = _waits_on_cycle(plan.tasks)
    if cycle is not None:  # only a plan built by hand gets here: parse_plan refuses a cycle
        raise ConfigError(plan.path, plan.tasks[position[cycle[0]]].line, _cycle_message(cycle))
    # Pairs are met first with first, so 1 -> 3 went in before 2 -> 3 implied it: twelve tasks on one file had
    # 66 edges, the last waiting on eleven. An edge a path of others implies goes (a written `after:` stays).
    reduced = nx.transitive_reduction(graph)
    edges = [e for e in edges if e.kind == "after" or reduced.has_edge(e.before, e.after)]
    waves = tuple(tuple(sorted(wave, key=position.__getitem__)) for wave in nx.topological_generations(graph))
    edges.sort(key=lambda e: (position[e.after], position[e.before]))
    return Schedule(plan=plan, edges=tuple(edges), waves=waves)


def _task_regions(plan: Plan, task: PlanTask, regions_of: RegionsOf) -> list[str]:
    found: list[str] = []
    for target, line in task.claims_with_lines():
        try:
            resolved = regions_of(target)
        except LoomError as exc:
            raise ConfigError(plan.path, line, f"task {task.name}: {exc}") from None
        found.extend(region for region in resolved if region not in found)
    return found


def _candidate(order: str, first: PlanTask, second: PlanTask, regions: dict[str, list[str]],
               depends: Depends) -> _Candidate | None:
    """The edge two tasks' regions ask for (`first` is written before `second`), or None."""
    shared = [(a, b) for a in regions[first.name] for b in regions[second.name] if overlaps(a, b)]
    shared.sort(key=lambda pair: pair[0] != pair[1])  # a region both claim says it best
    uses = _first_use(regions[first.name], regions[second.name], depends)
    used_by = _first_use(regions[second.name], regions[first.name], depends)
    directed: tuple[str, str, str] | None = None  # (before, after, why)
    if uses and not used_by:
        directed = _by_dependency(order, caller=first.name, callee=second.name, use=uses)
    elif used_by and not uses:
        directed = _by_dependency(order, caller=second.name, callee=first.name, use=used_by)
    if shared:
        both = _overlap_text(first.name, second.name, shared)
        if directed is not None:
            before, after, why = directed
            return _Candidate(Edge(before, after, f"{both}: never at once; {why}", "overlap"), True, shared[0])
        return _Candidate(Edge(first.name, second.name, f"{both}: never at once, in file order", "overlap"),
                          False, shared[0])
    if directed is not None:
        before, after, why = directed
        return _Candidate(Edge(before, after, why, "dependency"), True, None)
    if uses and used_by:  # each uses the other: no callee to put first, so file order
        why = (f"{first.name} and {second.name} use each other's regions ({uses[2]}; {used_by[2]}): "
               "in file order")
        return _Candidate(Edge(first.name, second.name, why, "dependency"), False, None)
    return None


def _first_use(mine: Sequence[str], theirs: Sequence[str], depends: Depends) -> tuple[str, str, str] | None:
    """(my region, their region, how) for the first of my regions that uses one of theirs."""
    for a in mine:
        for b in theirs:
            # Overlapping regions are one change, not a dependency (a module "uses" its own functions).
            if not overlaps(a, b) and (how := depends(a, b)):
                return a, b, how
    return None


def _by_dependency(order: str, *, caller: str, callee: str, use: tuple[str, str, str]) -> tuple[str, str, str]:
    """(before, after, why) when task `caller`'s region use[0] uses task `callee`'s region use[1]."""
    user, used, how = use
    if order == "caller-first":
        return caller, callee, f"{caller} changes {user}, which uses {callee}'s {used} ({how}): caller first"
    return callee, caller, f"{callee} changes {used}, which {caller} uses ({how}): callee first"


def _overlap_text(first: str, second: str, shared: Sequence[tuple[str, str]]) -> str:
    a, b = shared[0]
    # As the claim checks say it: a getter and its setter (`file`, `file#2`) are one name defined again, not nested.
    how = "one name, defined again" if named_once(a) == named_once(b) else "one inside the other"
    text = f"both claim {a}" if a == b else f"{first} claims {a} and {second} claims {b}, {how}"
    more = len(shared) - 1
    return text + (f" (and {more} more overlapping pair{'' if more == 1 else 's'})" if more else "")


def _pair_text(pair: tuple[str, str]) -> str:
    return pair[0] if pair[0] == pair[1] else f"{pair[0]} and {pair[1]}"


# -- the relations of a real repository ------------------------------------------------------


def coordinator_relations(coordinator: Coordinator) -> tuple[RegionsOf, Depends]:
    """`schedule`'s two callables over a real repository's coordinator.

    Targets resolve as claims do (`Coordinator.resolve`). Region a depends on b
    when a directed path of at most `coordinator.hops` dependency edges leads
    from a region a covers to one b covers (a claim covers what is nested in it,
    as in the coordinator's checks). Direction comes from the index's DiGraph,
    whose edge u -> v means u imports, references or inherits v: v is the callee.
    (`dependency_view()` forgets that direction; it only says two regions touch.)
    """
    index = coordinator.index
    covered: dict[str, frozenset[str]] = {}
    landing: dict[str, frozenset[str]] = {}
    reached: dict[str, dict[str, tuple[str, ...]]] = {}

    def covers(region: str) -> frozenset[str]:
        if region not in covered:
            covered[region] = frozenset(coordinator.covered(region))
        return covered[region]

    def used_through(region: str) -> frozenset[str]:
        # A constructor's users reach its class: a task on `Text.__init__` and one on a caller of `Text(...)` ran in
        # one wave, while the claim checks warned of the pair.
        if region not in landing:
            landing[region] = coordinator.used_through(region)
        return landing[region]

    def depends(user: str, used: str) -> str | None:
        if user not in reached:
            reached[user] = _used_within(index, covers(user), coordinator.hops)
        paths = [path for region, path in reached[user].items() if region in used_through(used)]
        if not paths:
            return None
        return coordinator.describe_path(min(paths, key=lambda path: (len(path), path)))

    return coordinator.resolve, depends


def _used_within(index: RepoIndex, sources: Collection[str], hops: int) -> dict[str, tuple[str, ...]]:
    """Each region reached from `sources` along at most `hops` dependency edges followed forwards
    (user to used), with the shortest path to it; the sources themselves are left out."""
    paths: dict[str, tuple[str, ...]] = {source: (source,) for source in sorted(sources) if source in index.regions}
    frontier = list(paths)
    for _ in range(hops):
        if not frontier:
            break
        by_source: dict[str, list[tuple[str, frozenset[str]]]] = {}
        for src, dst, kinds in index.out_edges(frontier):
            by_source.setdefault(src, []).append((dst, kinds))
        following: list[str] = []
        for node in frontier:
            for other, kinds in sorted(by_source.get(node, ())):
                # `contains` edges only nest regions: a class does not use its methods.
                if other not in paths and kinds & DEPENDENCY_KINDS:
                    paths[other] = (*paths[node], other)
                    following.append(other)
        frontier = following
    return {region: path for region, path in paths.items() if len(path) > 1}
