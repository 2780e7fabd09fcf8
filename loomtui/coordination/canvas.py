"""The claims graph drawn on a character canvas: boxes of claimed regions, the links between them,
the conflicting paths in heavy lines. Plain text and (line, start, end, role) spans for any UI.

Regions are grouped into one box per file; each row names a region (its short name, cut to
fit) with a dot per sandbox that claims it. With many regions the drawing collapses to one box
per file (or per directory when there are many files) that counts the regions of each sandbox.
Boxes are placed with networkx: each weakly connected set of boxes is layered left to right
along its links (callers left of what they use), its columns ordered by neighbours' positions;
boxes without links fill rows below. Links are routed around the boxes (`canvas_route`), so no
line crosses a label and no two boxes meet. The drawing always fits the width it is given; when
it is taller than the view, the UI scrolls or pages it (`Canvas.page`).

A view can be filtered to one sandbox (its regions and their neighbours) or zoomed to one
conflict (only the regions on its path). The same input always gives the same canvas.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx

from loomtui.coordination.canvas_route import E, Grid, Painter, Span, W
from loomtui.coordination.regions import split_id
from loomtui.coordination.view import CoordinationPicture
from loomtui.errors import escape_controls

ROLE_HEADER = "header"
ROLE_BOX = "box"
ROLE_TITLE = "title"
ROLE_EDGE = "edge"
ROLE_CONFLICT = "conflict"
ROLE_FREE = "free"  # a region no sandbox claims (a neighbour, or a step of a conflict's path)
ROLE_MUTED = "muted"
SANDBOX_ROLE = "sandbox:"

DETAIL_REGIONS = 60  # more regions than this: one box per file or directory, with counts
FILE_BOXES = 48  # more files than this in a collapsed drawing: one box per directory
DETAIL_LINKS = 150
COLLAPSED_LINKS = 40
SANDBOX_ROWS = 4  # a collapsed box lists this many sandboxes, then "+N more"
MIN_BOX, MAX_BOX = 14, 40
READABLE_BOX = 22  # narrower than this, boxes go in fewer columns
LOOP_ROOM = 5  # extra columns right of a single column of boxes, for the links between them
GAP_MIN, GAP_MAX = 4, 14
RIGHT_MARGIN = 3  # room right of the last column for links that loop back into a box
LEGEND_LINES = 2


def sandbox_role(sandbox: str) -> str:
    """The role of text coloured as this sandbox's."""
    return SANDBOX_ROLE + sandbox


@dataclass(frozen=True)
class Link:
    """A dependency between two regions: `source` uses `target` (calls, references, imports...)."""

    source: str
    target: str
    kind: str


@dataclass(frozen=True)
class ClaimsGraph:
    """What the drawing is made of: each region's claiming sandboxes, links, conflict paths."""

    owners: Mapping[str, tuple[str, ...]]  # region id -> sandboxes claiming it; () for a free region
    links: tuple[Link, ...]
    conflicts: tuple[tuple[str, ...], ...]  # each conflict's path of region ids, in the picture's order
    sandboxes: tuple[str, ...]  # in the order they first claimed something (the legend's order)


@dataclass(frozen=True)
class Box:
    """A box as placed on the canvas (lines counted from the canvas' first line)."""

    key: str
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Canvas:
    """Lines of plain text and the roles of their spans; `header` lines (summary, legend) come first."""

    lines: tuple[str, ...]
    spans: tuple[Span, ...]
    boxes: tuple[Box, ...]
    collapsed: bool
    drawn: int  # links drawn
    hidden: int  # links left out (over the budget, or no route found)
    header: int

    @property
    def width(self) -> int:
        return max((len(line) for line in self.lines), default=0)

    def pages(self, height: int) -> int:
        """How many pages of `height` lines the drawing under the header takes (at least 1)."""
        body = len(self.lines) - self.header
        room = max(1, height - self.header)
        return max(1, -(-body // room))

    def page(self, index: int, height: int) -> tuple[tuple[str, ...], tuple[Span, ...]]:
        """The header and the `index`th page of the drawing, `height` lines in all, spans renumbered."""
        room = max(1, height - self.header)
        start = self.header + max(0, min(index, self.pages(height) - 1)) * room
        keep = [*range(self.header), *range(start, min(start + room, len(self.lines)))]
        where = {old: new for new, old in enumerate(keep)}
        spans = tuple(Span(where[s.line], s.start, s.end, s.role) for s in self.spans if s.line in where)
        return tuple(self.lines[i] for i in keep), spans


def claims_graph(picture: CoordinationPicture) -> ClaimsGraph:
    """The drawing's input from a coordination picture: claimed regions, neighbours, links, conflicts."""
    owners: dict[str, set[str]] = {}
    order: list[str] = []
    for claim in sorted(picture.claims, key=lambda c: c.id):
        if claim.sandbox_id not in order:
            order.append(claim.sandbox_id)
        for region_id in claim.region_ids:
            owners.setdefault(region_id, set()).add(claim.sandbox_id)
    links: dict[tuple[str, str], str] = {}
    for region_id, edges in picture.neighbourhoods.items():
        for edge in edges:
            pair = (region_id, edge.neighbour) if edge.outgoing else (edge.neighbour, region_id)
            links[pair] = edge.kind
            owners.setdefault(edge.neighbour, set()).update(edge.owners)
    paths: list[tuple[str, ...]] = []
    for conflict in picture.conflicts:
        owners.setdefault(conflict.region_a, set()).add(conflict.sandbox_a)
        owners.setdefault(conflict.region_b, set()).add(conflict.sandbox_b)
        for region_id in conflict.path:
            owners.setdefault(region_id, set())
        for a, b in zip(conflict.path, conflict.path[1:], strict=False):
            if (a, b) not in links and (b, a) not in links:
                links[(a, b)] = conflict.kind  # an overlap has no dependency edge: draw the conflict itself
        paths.append(tuple(conflict.path))
    in_order = _order_key(order)
    return ClaimsGraph(
        owners={rid: tuple(sorted(found, key=in_order)) for rid, found in owners.items()},
        links=tuple(Link(a, b, kind) for (a, b), kind in sorted(links.items())),
        conflicts=tuple(paths), sandboxes=tuple(order),
    )


def _order_key(order: Sequence[str]) -> Callable[[str], tuple[int, str]]:
    rank = {name: n for n, name in enumerate(order)}
    return lambda name: (rank.get(name, len(rank)), name)


# -- which regions a view shows -----------------------------------------------------------


@dataclass
class _View:
    regions: set[str]
    links: list[Link]
    hot_regions: set[str]
    hot_pairs: set[frozenset[str]]
    label: str


def _view(graph: ClaimsGraph, sandbox: str | None, conflict: int | None) -> _View:
    if conflict is not None and 0 <= conflict < len(graph.conflicts):
        path = graph.conflicts[conflict]
        pairs = {frozenset(p) for p in zip(path, path[1:], strict=False)}
        links = [link for link in graph.links if frozenset((link.source, link.target)) in pairs]
        return _View(set(path), links, set(path), pairs,
                     f"zoom: conflict {conflict + 1} of {len(graph.conflicts)} (esc: back)")
    if sandbox is not None:
        mine = {rid for rid, found in graph.owners.items() if sandbox in found}
        links = [link for link in graph.links if link.source in mine or link.target in mine]
        regions = mine | {rid for link in links for rid in (link.source, link.target)}
        paths = [p for p in graph.conflicts if mine & set(p)]
        return _View(regions, links, {r for p in paths for r in p},
                     {frozenset(pair) for p in paths for pair in zip(p, p[1:], strict=False)},
                     f"filter: {_plain(sandbox)} and its neighbours (f: next, esc: all)")
    regions = {rid for rid, found in graph.owners.items() if found} | {r for p in graph.conflicts for r in p}
    links = [link for link in graph.links if link.source in regions and link.target in regions]
    return _View(regions, links, {r for p in graph.conflicts for r in p},
                 {frozenset(pair) for p in graph.conflicts for pair in zip(p, p[1:], strict=False)}, "")


# -- boxes and their rows ---------------------------------------------------------------------


Segment = tuple[str, str]  # (text, role)


@dataclass
class _Group:
    key: str
    rows: list[list[Segment]] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)  # region id -> its row (detail drawings)
    x: int = 0
    y: int = 0
    w: int = 0
    h: int = 0
    sides: Counter[int] = field(default_factory=Counter)  # links attached so far, per side (collapsed)


def _plain(text: str) -> str:
    """Untrusted text (a path, a name) as one line of narrow characters, so the grid stays aligned."""
    text = escape_controls(text)
    return "".join("?" if unicodedata.east_asian_width(ch) in "WF" or unicodedata.combining(ch) else ch
                   for ch in text)


def _cut_left(text: str, room: int) -> str:
    """`text` in `room` characters, its start replaced by `…` when longer (the end names it best)."""
    if room <= 0:
        return ""
    return text if len(text) <= room else "…" + text[len(text) - room + 1:]


def _short(region_id: str) -> str:
    path, qualname = split_id(region_id)
    return _plain(qualname) if qualname else "(module)"


def _region_row(region_id: str, owners: tuple[str, ...], hot: bool, inner: int) -> list[Segment]:
    row: list[Segment] = [("!", ROLE_CONFLICT) if hot else (" ", ROLE_BOX)]
    row += [("●", sandbox_role(s)) for s in owners[:2]] or [("○", ROLE_FREE)]
    if len(owners) > 2:
        row.append(("+", ROLE_MUTED))
    used = sum(len(text) for text, _ in row) + 1
    label = _short(region_id)
    owner = _plain(owners[0]) if owners else "free"
    room = inner - used
    label_role = ROLE_CONFLICT if hot else sandbox_role(owners[0]) if owners else ROLE_FREE
    if len(label) + 2 + len(owner) <= room:
        pad = room - len(label) - len(owner)
        return [*row, (" ", ROLE_BOX), (label, label_role), (" " * pad, ROLE_BOX),
                (owner, sandbox_role(owners[0]) if owners else ROLE_FREE)]
    return [*row, (" ", ROLE_BOX), (_cut_left(label, room), label_role)]


def _region_natural(region_id: str, owners: tuple[str, ...]) -> int:
    return 1 + min(len(owners), 2) + (len(owners) > 2) + max(1, not owners) + 1 + len(_short(region_id)) + 2 + \
        len(_plain(owners[0]) if owners else "free")


def _count_rows(regions: Iterable[str], graph: ClaimsGraph, hot: set[str], inner: int) -> list[list[Segment]]:
    counts: Counter[str] = Counter()
    burning = 0
    for rid in regions:
        counts.update(graph.owners.get(rid, ()) or ("",))
        burning += rid in hot
    rank = _order_key(graph.sandboxes)
    ordered = sorted(counts, key=lambda s: (-counts[s], rank(s)))
    rows: list[list[Segment]] = []
    if burning:
        rows.append(_fit([("!", ROLE_CONFLICT), (f" {burning} in conflict", ROLE_CONFLICT)], inner))
    shown = ordered if len(ordered) <= SANDBOX_ROWS else ordered[:SANDBOX_ROWS - 1]
    for sandbox in shown:
        dot, role = ("●", sandbox_role(sandbox)) if sandbox else ("○", ROLE_FREE)
        name = _plain(sandbox) if sandbox else "free"
        number = str(counts[sandbox])
        name = _cut_left(name, inner - 4 - len(number)) if len(name) + 4 + len(number) > inner else name
        pad = max(1, inner - 3 - len(name) - len(number))
        rows.append([(" ", ROLE_BOX), (dot, role), (" ", ROLE_BOX), (name, role), (" " * pad, ROLE_BOX),
                     (number, ROLE_MUTED)])
    rest = ordered[len(shown):]
    if rest:
        more = f" +{len(rest)} more: {sum(counts[s] for s in rest)}"
        rows.append(_fit([(more, ROLE_MUTED)], inner))
    return rows


def _fit(row: list[Segment], inner: int) -> list[Segment]:
    fitted: list[Segment] = []
    room = inner
    for text, role in row:
        fitted.append((text[:room], role))
        room -= len(fitted[-1][0])
    return fitted


# -- drawing ------------------------------------------------------------------------------------


def draw_claims(graph: ClaimsGraph, width: int, *, sandbox: str | None = None, conflict: int | None = None,
                collapse: bool | None = None) -> Canvas:
    """Lay the claims graph out in `width` columns (filtered to a sandbox, or zoomed to a conflict).

    `collapse` None decides by size: regions one by one up to DETAIL_REGIONS, counts per box beyond.
    """
    width = max(8, width)
    view = _view(graph, sandbox, conflict)
    collapsed = len(view.regions) > DETAIL_REGIONS if collapse is None else collapse
    files = {split_id(rid)[0] for rid in view.regions}
    by_directory = collapsed and len(files) > FILE_BOXES

    def group_of(region_id: str) -> str:
        path = split_id(region_id)[0]
        return (path.rpartition("/")[0] or ".") + "/" if by_directory else path

    members: dict[str, list[str]] = {}
    for rid in sorted(view.regions):
        members.setdefault(group_of(rid), []).append(rid)
    groups = {key: _Group(key) for key in members}
    # Links between boxes (collapsed) or regions (detail), conflict paths first, then the shortest.
    pairs: Counter[tuple[str, str]] = Counter()
    hot_group_pairs: set[tuple[str, str]] = set()
    for link in view.links:
        a, b = group_of(link.source), group_of(link.target)
        if a != b:
            pairs[(a, b)] += 1
            if frozenset((link.source, link.target)) in view.hot_pairs:
                hot_group_pairs.add((a, b))
    avail = max(4, width - RIGHT_MARGIN)
    natural = max((len(_plain(key)) + 6 for key in groups), default=MIN_BOX)
    if collapsed:
        natural = max(natural, 20)  # "! 12 in conflict"
    for regions in members.values():
        if collapsed:
            natural = max(natural, max((len(_plain(s)) + 8 for r in regions for s in graph.owners.get(r, ())),
                                       default=0))
        else:
            natural = max(natural, max(_region_natural(r, graph.owners.get(r, ())) + 2 for r in regions))
    box_w = min(natural, MAX_BOX)
    parts = _parts(groups, pairs)
    layers = max((len(set(_layers(part).values())) for part in parts), default=1)
    layers = max(layers, sum(len(part) == 1 for part in parts))  # single boxes fill rows side by side
    for columns in range(min(3, layers), 1, -1):
        # Narrower boxes side by side rather than one column, while labels keep room to read.
        fit = (avail - (columns - 1) * GAP_MIN) // columns
        if fit >= min(box_w, READABLE_BOX):
            box_w = min(box_w, fit)
            break
    else:
        box_w = min(box_w, avail - LOOP_ROOM)  # one column: links loop on its right, keep them apart
    box_w = min(max(MIN_BOX, box_w), avail)
    inner = box_w - 2
    for key, group in groups.items():
        regions = members[key]
        if collapsed:
            group.rows = _count_rows(regions, graph, view.hot_regions, inner)
        else:
            for n, rid in enumerate(regions):
                group.rows.append(_region_row(rid, graph.owners.get(rid, ()), rid in view.hot_regions, inner))
                group.ports[rid] = n
        group.w, group.h = box_w, len(group.rows) + 2

    height = _place(groups, pairs, avail, box_w)
    grid = Grid(0, 0, width, height + 1)
    for group in groups.values():
        grid.wall(group.x, group.y, group.w, group.h)
    wanted: list[tuple[str, str, bool]]
    if collapsed:
        wanted = [(a, b, (a, b) in hot_group_pairs) for a, b in pairs]
        budget = COLLAPSED_LINKS
    else:
        wanted = [(link.source, link.target, frozenset((link.source, link.target)) in view.hot_pairs)
                  for link in view.links]
        budget = DETAIL_LINKS

    def distance(item: tuple[str, str, bool]) -> tuple[bool, int, int, str, str]:
        a, b = groups[group_of(item[0])], groups[group_of(item[1])]
        return (not item[2], -pairs.get((group_of(item[0]), group_of(item[1])), 0),
                abs(a.x - b.x) + abs(a.y - b.y), item[0], item[1])

    wanted.sort(key=distance)
    drawn = 0
    for source, target, hot in wanted[:budget]:
        drawn += _link(grid, groups, group_of, source, target, hot, collapsed)
    hidden = len(wanted) - drawn

    painter = Painter(width)
    for cell, glyph, hot in grid.glyphs():
        painter.put(cell[0], cell[1], glyph, ROLE_CONFLICT if hot else ROLE_EDGE)
    for group in groups.values():
        _paint_box(painter, grid, group, group.key in {group_of(r) for r in view.hot_regions})
    header = _header(graph, view, groups, collapsed, by_directory, drawn, hidden, width)
    body, spans = painter.result(len(header[0]))
    head_lines, head_spans = header
    boxes = tuple(Box(g.key, g.x, g.y + len(head_lines), g.w, g.h) for g in sorted(groups.values(),
                                                                                    key=lambda g: (g.y, g.x)))
    return Canvas(tuple(head_lines + body), tuple(head_spans + spans), boxes, collapsed, drawn, hidden,
                  len(head_lines))


def _link(grid: Grid, groups: Mapping[str, _Group], group_of: Callable[[str], str], source: str, target: str,
          hot: bool, collapsed: bool) -> bool:
    a: _Group = groups[group_of(source)]
    b: _Group = groups[group_of(target)]
    # Which side each end uses: rightwards links leave east and enter west; leftwards the reverse;
    # within one column both ends are on the east side, the link looping through the gutter.
    if b.x > a.x:
        out_side, in_side = E, W
    elif b.x < a.x:
        out_side, in_side = W, E
    else:
        out_side, in_side = E, E
    row_a = _port_row(a, source, out_side, collapsed)
    row_b = _port_row(b, target, in_side, collapsed)
    start = (a.x + a.w if out_side == E else a.x - 1, a.y + 1 + row_a)
    goal = (b.x + b.w if in_side == E else b.x - 1, b.y + 1 + row_b)
    net, into = f"out\0{source}\0{out_side}", f"in\0{target}\0{in_side}"
    grid.claim_port(start, net)
    grid.claim_port(goal, into)
    entering = W if in_side == E else E  # the heading of the last step: into the box
    path = grid.route(start, out_side, goal, entering, net, into)
    if path is None:
        return False
    grid.lay(path, out_side, (net, into), hot=hot, arrow="◀" if entering == W else "▶")
    return True


def _port_row(group: _Group, region: str, side: int, collapsed: bool) -> int:
    if not collapsed:
        return group.ports[region]
    rows = max(1, group.h - 2)
    group.sides[side] += 1
    return (group.sides[side] - 1) % rows


def _parts(groups: Iterable[str], pairs: Iterable[tuple[str, str]]) -> list[nx.DiGraph[str]]:
    """The weakly connected sets of boxes, largest first, then single boxes, in a fixed order."""
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(sorted(groups))
    graph.add_edges_from(sorted(pairs))
    parts = sorted((sorted(part) for part in nx.weakly_connected_components(graph)), key=lambda p: (-len(p), p[0]))
    return [graph.subgraph(part) for part in parts]


def _layers(part: nx.DiGraph[str]) -> dict[str, int]:
    """Each box's layer: 0 for boxes nothing links to, else one past the furthest box linking to it
    (boxes linked in a cycle share a layer)."""
    condensed = nx.condensation(part)
    layer: dict[int, int] = {}
    for node in nx.topological_sort(condensed):
        layer[node] = max((layer[p] + 1 for p in condensed.predecessors(node)), default=0)
    mapping: dict[str, int] = condensed.graph["mapping"]
    return {key: layer[mapping[key]] for key in part}


def _place(groups: Mapping[str, _Group], pairs: Iterable[tuple[str, str]], avail: int, box_w: int) -> int:
    """Give each box its place; returns the drawing's height."""
    top = 0
    singles: list[str] = []
    for part in _parts(groups, pairs):
        if len(part) > 1:
            top = _place_layers(part, groups, avail, box_w, top)
        else:
            singles.extend(part)
    per_row = max(1, (avail + 2) // (box_w + 2))
    for start in range(0, len(singles), per_row):
        row = [groups[key] for key in singles[start:start + per_row]]
        for n, group in enumerate(row):
            group.x, group.y = n * (box_w + 2), top + 1
        top += 1 + max(group.h for group in row)
    return top + 1


def _place_layers(part: nx.DiGraph[str], groups: Mapping[str, _Group], avail: int, box_w: int, top: int) -> int:
    """Layer a connected set of boxes left to right along its links; returns the line under it."""
    layer = _layers(part)
    layers = max(layer.values()) + 1
    columns = min(layers, max(1, (avail + GAP_MIN) // (box_w + GAP_MIN)))
    column = {key: layer[key] * columns // layers for key in part}
    stacks: list[list[str]] = [sorted(k for k in part if column[k] == c) for c in range(columns)]
    for sweep in range(4):  # barycentre ordering, alternately from the left and from the right
        for c in range(1, columns) if sweep % 2 == 0 else range(columns - 2, -1, -1):
            stacks[c].sort(key=_barycentre(part, stacks, column, c, from_left=sweep % 2 == 0))
    # Columns the width has to spare go to the tallest layers (a cycle of many boxes is one layer),
    # each of which then fills several columns, top to bottom, left to right.
    fit = max(1, (avail + GAP_MIN) // (box_w + GAP_MIN))
    split = [1] * columns
    for _ in range(fit - columns):
        tallest = max(range(columns), key=lambda c: (len(stacks[c]) / split[c], -c))
        if len(stacks[tallest]) / split[tallest] <= 2:
            break
        split[tallest] += 1
    physical: list[list[str]] = []
    for stack, parts in zip(stacks, split, strict=True):
        size = -(-len(stack) // parts)
        physical.extend(stack[n * size:(n + 1) * size] for n in range(parts))
    count = len(physical)
    gap = GAP_MIN if count == 1 else max(GAP_MIN, min(GAP_MAX, (avail - count * box_w) // (count - 1)))
    bottom = top
    for c, stack in enumerate(physical):
        y = top + 1
        for key in stack:
            group = groups[key]
            group.x, group.y = c * (box_w + gap), y
            y += group.h + 1
        bottom = max(bottom, y)
    return bottom


def _barycentre(part: nx.DiGraph[str], stacks: list[list[str]], column: Mapping[str, int], c: int, *,
                from_left: bool) -> Callable[[str], tuple[float, str]]:
    """A sort key for column `c`: the mean position of a box's neighbours in the columns on one side."""
    position = {key: n for stack in stacks for n, key in enumerate(stack)}

    def centre(key: str) -> tuple[float, str]:
        near = [position[n] for n in (*part.predecessors(key), *part.successors(key))
                if (column[n] < c if from_left else column[n] > c)]
        return (sum(near) / len(near) if near else float(position[key]), key)

    return centre


def _paint_box(painter: Painter, grid: Grid, group: _Group, hot: bool) -> None:
    x, y, w, h = group.x, group.y, group.w, group.h
    title = _cut_left(_plain(group.key), w - 4)
    painter.put(x, y, "┌" + "─" * (w - 2) + "┐", ROLE_BOX)
    painter.put(x + 1, y, f" {title} ", ROLE_CONFLICT if hot else ROLE_TITLE)
    for n in range(1, h - 1):
        painter.put(x, y + n, "│" + " " * (w - 2) + "│", ROLE_BOX)
        cursor = x + 1
        for text, role in group.rows[n - 1]:
            painter.put(cursor, y + n, text, role)
            cursor += len(text)
    painter.put(x, y + h - 1, "└" + "─" * (w - 2) + "┘", ROLE_BOX)
    for row in range(y + 1, y + h - 1):  # joints where links leave the box
        for at, outside, towards, glyph in ((x + w - 1, x + w, W, "├"), (x, x - 1, E, "┤")):
            if grid.bits.get((outside, row), 0) & towards and (outside, row) not in grid.arrows:
                painter.put(at, row, glyph, ROLE_CONFLICT if (outside, row) in grid.heavy else ROLE_EDGE)


def _count(number: int, one: str, many: str = "") -> str:
    return f"{number} {one if number == 1 else many or one + 's'}"


def _header(graph: ClaimsGraph, view: _View, groups: Mapping[str, _Group], collapsed: bool, by_directory: bool,
            drawn: int, hidden: int, width: int) -> tuple[list[str], list[Span]]:
    conflicts = sum(1 for path in graph.conflicts if set(path) <= view.regions)
    summary = f"{_count(len(view.regions), 'region')} in "
    summary += _count(len(groups), "directory", "directories") if by_directory else _count(len(groups), "file")
    summary += f" · {_count(drawn, 'link')}" + (f" ({hidden} not drawn)" if hidden else "")
    if "zoom" not in view.label:
        summary += f" · {_count(conflicts, 'conflict')}"
    summary += " · counts per sandbox" if collapsed else ""
    lines = [summary if len(summary) <= width else summary[:width - 1] + "…"]
    spans = [Span(0, 0, len(lines[0]), ROLE_HEADER)]
    if view.label:
        lines.append(_plain(view.label)[:width])
        spans.append(Span(len(lines) - 1, 0, len(lines[-1]), ROLE_CONFLICT if "zoom" in view.label else ROLE_HEADER))
    seen = {s for rid in view.regions for s in graph.owners.get(rid, ())}
    shown = [s for s in graph.sandboxes if s in seen]
    legend: list[list[tuple[str, str]]] = [[]]
    for n, sandbox in enumerate(shown):
        item = (f"● {_cut_left(_plain(sandbox), width - 4)}", sandbox_role(sandbox))
        more = f"+{len(shown) - n} more"
        used = sum(len(text) + 2 for text, _ in legend[-1])
        last = len(legend) == LEGEND_LINES
        tail = len(more) + 2 if last and n < len(shown) - 1 else 0
        if used + len(item[0]) + tail > width:
            if last:
                legend[-1].append((more, ROLE_MUTED))
                break
            legend.append([])
        legend[-1].append(item)
    for row in legend:
        text = ""
        for part, role in row:
            spans.append(Span(len(lines), len(text), len(text) + len(part), role))
            text += part + "  "
        if text:
            lines.append(text.rstrip())
    key = [("━━▶", ROLE_CONFLICT), (" conflict path  ", ROLE_MUTED), ("──▶", ROLE_EDGE), (" uses  ", ROLE_MUTED),
           ("!", ROLE_CONFLICT), (" in conflict  ", ROLE_MUTED), ("○", ROLE_FREE), (" unclaimed", ROLE_MUTED)]
    text = ""
    for part, role in key:
        if len(text) + len(part) > width:
            break
        spans.append(Span(len(lines), len(text), len(text) + len(part), role))
        text += part
    lines.append(text.rstrip())
    return lines, spans
