"""The character grid a claims drawing is made on (`Painter`), and the lines between its boxes:
A* routes around the boxes, drawn in box-drawing characters (`Grid`).

A route runs from a port cell beside its source box to a port cell beside its target box.
Box cells are walls. Cells already used by another link cost more (running along one costs
far more than crossing it), so links keep apart while there is room; the links leaving one
port (or entering one) share their cells at no cost, as a tree. Ties break in a fixed order, so the same
input always gives the same drawing. A search that expands too many cells gives up: the
caller counts that link as not drawn rather than waiting.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

N, E, S, W = 1, 2, 4, 8
STEPS = ((E, 1, 0), (W, -1, 0), (S, 0, 1), (N, 0, -1))  # fixed order: deterministic ties
OPPOSITE = {N: S, S: N, E: W, W: E}
LIGHT = {0: " ", N: "│", S: "│", N | S: "│", E: "─", W: "─", E | W: "─", N | E: "└", E | S: "┌", S | W: "┐",
         N | W: "┘", N | E | S: "├", N | S | W: "┤", E | S | W: "┬", N | E | W: "┴", N | E | S | W: "┼"}
HEAVY = {0: " ", N: "┃", S: "┃", N | S: "┃", E: "━", W: "━", E | W: "━", N | E: "┗", E | S: "┏", S | W: "┓",
         N | W: "┛", N | E | S: "┣", N | S | W: "┫", E | S | W: "┳", N | E | W: "┻", N | E | S | W: "╋"}

TURN = 1
CROSS = 2
ALONG = 12  # running in the same direction through another link's cell
PORT = 20  # passing through another link's port cell
MAX_EXPANSIONS = 40_000

Cell = tuple[int, int]


@dataclass(frozen=True)
class Span:
    """Text of one role on a line: `line[start:end]`."""

    line: int
    start: int
    end: int
    role: str


@dataclass
class Grid:
    """The cells a drawing's links may use, and what the links drawn so far left in them."""

    left: int
    top: int
    right: int  # exclusive
    bottom: int  # exclusive
    walls: set[Cell] = field(default_factory=set)
    bits: dict[Cell, int] = field(default_factory=dict)
    nets: dict[Cell, set[str]] = field(default_factory=dict)
    heavy: set[Cell] = field(default_factory=set)
    ports: dict[Cell, str] = field(default_factory=dict)  # cell -> the net whose port it is
    arrows: dict[Cell, str] = field(default_factory=dict)

    def wall(self, x: int, y: int, w: int, h: int) -> None:
        """Mark a box (and so its label) as a wall no link crosses."""
        self.walls.update((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h))

    def free(self, cell: Cell) -> bool:
        x, y = cell
        return self.left <= x < self.right and self.top <= y < self.bottom and cell not in self.walls

    def route(self, start: Cell, start_dir: int, goal: Cell, goal_dir: int, net: str,
              into: str = "") -> list[Cell] | None:
        """Cheapest path of cells from `start` (leaving its box towards `start_dir`) into `goal`,
        arriving moving towards `goal_dir` (into the target box). None when there is none in budget.
        Cells of links of the same `net` (leaving one port) or the same `into` (entering one) are free
        to share: they draw as one tree.

        The search first keeps to the rectangle around both ends (a little wider), where nearly
        every route lies, and only when that fails searches the whole grid.
        """
        if not self.free(start) or not self.free(goal):
            return None
        (sx, sy), (gx, gy) = start, goal
        near = (max(self.left, min(sx, gx) - 8), max(self.top, min(sy, gy) - 3),
                min(self.right, max(sx, gx) + 9), min(self.bottom, max(sy, gy) + 4))
        friends = {net, into or net}
        path = self._search(start, start_dir, goal, goal_dir, friends, near)
        if path is None and near != (self.left, self.top, self.right, self.bottom):
            path = self._search(start, start_dir, goal, goal_dir, friends,
                                (self.left, self.top, self.right, self.bottom))
        return path

    def _search(self, start: Cell, start_dir: int, goal: Cell, goal_dir: int, friends: set[str],
                bounds: tuple[int, int, int, int]) -> list[Cell] | None:
        left, top, right, bottom = bounds
        walls, ports, nets, bits = self.walls, self.ports, self.nets, self.bits
        gx, gy = goal
        first = (start[0], start[1], start_dir)
        best: dict[tuple[int, int, int], int] = {first: 0}
        came: dict[tuple[int, int, int], tuple[int, int, int]] = {}
        queue: list[tuple[int, int, int, tuple[int, int, int]]] = [(0, 0, 0, first)]
        expanded = pushed = 0
        while queue:
            _, deeper, _, state = heapq.heappop(queue)
            cost = -deeper
            x, y, heading = state
            if cost > best.get(state, cost):
                continue
            if x == gx and y == gy and heading == goal_dir:
                path = [(x, y)]
                while state in came:
                    state = came[state]
                    path.append((state[0], state[1]))
                return path[::-1]
            expanded += 1
            if expanded > MAX_EXPANSIONS:
                return None
            for step, dx, dy in STEPS:
                if step == OPPOSITE[heading]:
                    continue
                cx, cy = x + dx, y + dy
                cell = (cx, cy)
                if not (left <= cx < right and top <= cy < bottom) or cell in walls:
                    continue
                total = cost + 1 + (TURN if step != heading else 0)
                owner = ports.get(cell)
                if owner is not None and owner not in friends:
                    total += PORT
                users = nets.get(cell)
                if users and not users & friends:
                    total += ALONG if bits.get(cell, 0) & (E | W if dx else N | S) else CROSS
                following = (cx, cy, step)
                if total < best.get(following, 1 << 30):
                    best[following] = total
                    came[following] = state
                    pushed += 1
                    estimate = total + abs(gx - cx) + abs(gy - cy)
                    heapq.heappush(queue, (estimate, -total, pushed, following))  # ties: the deeper first
        return None

    def claim_port(self, cell: Cell, net: str) -> None:
        self.ports.setdefault(cell, net)

    def lay(self, path: list[Cell], start_dir: int, nets: tuple[str, str], *, hot: bool, arrow: str) -> None:
        """Record a routed path: its line bits, its nets, the start's joint to its box, the arrow at its end."""
        self._add(path[0], OPPOSITE[start_dir], nets, hot)
        for here, there in zip(path, path[1:], strict=False):
            step = _direction(here, there)
            self._add(here, step, nets, hot)
            self._add(there, OPPOSITE[step], nets, hot)
        if len(path) == 1:
            self._add(path[0], start_dir, nets, hot)
        self.arrows[path[-1]] = arrow

    def _add(self, cell: Cell, bit: int, nets: tuple[str, str], hot: bool) -> None:
        self.bits[cell] = self.bits.get(cell, 0) | bit
        self.nets.setdefault(cell, set()).update(nets)
        if hot:
            self.heavy.add(cell)

    def glyphs(self) -> Iterable[tuple[Cell, str, bool]]:
        """Each used cell, its character, and whether a conflict path runs through it."""
        for cell in sorted(self.bits, key=lambda c: (c[1], c[0])):
            hot = cell in self.heavy
            glyph = self.arrows.get(cell) or (HEAVY if hot else LIGHT)[self.bits[cell]]
            yield cell, glyph, hot


class Painter:
    """A growing grid of characters, each with a role."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.chars: list[list[str]] = []
        self.roles: list[list[str]] = []

    def put(self, x: int, y: int, text: str, role: str) -> None:
        while len(self.chars) <= y:
            self.chars.append([" "] * self.width)
            self.roles.append([""] * self.width)
        for offset, ch in enumerate(text):
            if 0 <= x + offset < self.width:
                self.chars[y][x + offset] = ch
                self.roles[y][x + offset] = role

    def result(self, offset: int) -> tuple[list[str], list[Span]]:
        lines: list[str] = []
        spans: list[Span] = []
        for y, (chars, roles) in enumerate(zip(self.chars, self.roles, strict=True)):
            line = "".join(chars).rstrip()
            lines.append(line)
            start = 0
            for x in range(1, len(line) + 1):
                if x == len(line) or roles[x] != roles[start]:
                    if roles[start] and line[start:x].strip():
                        spans.append(Span(y + offset, start, x, roles[start]))
                    start = x
        return lines, spans


def _direction(here: Cell, there: Cell) -> int:
    if there[0] > here[0]:
        return E
    if there[0] < here[0]:
        return W
    return S if there[1] > here[1] else N
