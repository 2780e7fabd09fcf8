"""The drawn claims graph (`loomtui.coordination.canvas`): layout, highlight, filter, zoom, scale."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from loomtui.coordination.canvas import (
    ROLE_CONFLICT,
    ROLE_EDGE,
    Canvas,
    ClaimsGraph,
    Link,
    claims_graph,
    draw_claims,
    sandbox_role,
)
from loomtui.coordination.view import coordination_picture
from loomtui.governance.coordinator import governed_coordinator
from loomtui.workspace import open_workspace
from tests.conftest import demo_repo

QUOTE = "payments/refunds.py::RefundService.quote"
ROUNDING = "payments/currency.py::round_minor_units"
SUBTOTAL = "payments/invoices.py::InvoiceCalculator.subtotal"
TOTAL = "payments/invoices.py::InvoiceCalculator.total"
SEND = "notifications/email.py::EmailNotifier.send"
RENDER = "notifications/renderer.py::TemplateRenderer.render"
LINE_GLYPHS = set("─│┌┐└┘├┤┬┴┼━┃┏┓┗┛┣┫┳┻╋▶◀")


def small_graph() -> ClaimsGraph:
    """Four sandboxes on two packages; refunds' quote uses rounding's helper: one conflict."""
    owners = {QUOTE: ("refunds",), ROUNDING: ("rounding",), SUBTOTAL: ("invoices",), TOTAL: ("invoices",),
              SEND: ("mail",), RENDER: ("mail",)}
    links = (Link(QUOTE, ROUNDING, "references"), Link(SUBTOTAL, ROUNDING, "calls"), Link(TOTAL, SUBTOTAL, "calls"),
             Link(SEND, RENDER, "calls"))
    return ClaimsGraph(owners, links, ((QUOTE, ROUNDING),), ("refunds", "rounding", "invoices", "mail"))


def big_graph(sandboxes: int = 200, regions: int = 1000, seed: int = 7) -> ClaimsGraph:
    rng = random.Random(seed)
    files = [f"pkg{d}/mod{f}.py" for d in range(20) for f in range(15)]
    ids = sorted({f"{rng.choice(files)}::f{n}" for n in range(regions)})
    names = [f"agent-{n:03d}" for n in range(sandboxes)]
    owners = {rid: (names[n % sandboxes],) for n, rid in enumerate(ids)}
    links = tuple(sorted({Link(rng.choice(ids), rng.choice(ids), "calls") for _ in range(regions)},
                         key=lambda link: (link.source, link.target)))
    conflicts = tuple((link.source, link.target) for link in links[:30])
    return ClaimsGraph(owners, links, conflicts, tuple(names))


def cells(canvas: Canvas, role: str) -> set[tuple[int, int]]:
    """Where the drawing (not the header's legend) has text of this role."""
    return {(x, span.line) for span in canvas.spans if span.role == role and span.line >= canvas.header
            for x in range(span.start, span.end)}


def char_at(canvas: Canvas, x: int, y: int) -> str:
    line = canvas.lines[y]
    return line[x] if x < len(line) else " "


def assert_well_formed(canvas: Canvas, width: int) -> None:
    """Fits the width; boxes never meet; no line runs through a box (only its joints on the border)."""
    assert canvas.lines and all(len(line) <= width for line in canvas.lines)
    boxes = canvas.boxes
    for n, a in enumerate(boxes):
        assert a.x >= 0 and a.x + a.w <= width
        for b in boxes[n + 1:]:
            apart = a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y
            assert apart, f"{a} overlaps {b}"
    inside = {(x, y) for box in boxes for x in range(box.x + 1, box.x + box.w - 1)
              for y in range(box.y + 1, box.y + box.h - 1)}
    drawn = cells(canvas, ROLE_EDGE) | cells(canvas, ROLE_CONFLICT)
    lines_inside = {(x, y) for x, y in drawn & inside if char_at(canvas, x, y) in LINE_GLYPHS}
    assert not lines_inside, f"lines drawn over labels at {sorted(lines_inside)[:5]}"


def test_the_same_graph_always_gives_the_same_canvas_whatever_the_input_order() -> None:
    graph = small_graph()
    shuffled = ClaimsGraph(dict(reversed(list(graph.owners.items()))), tuple(reversed(graph.links)),
                           graph.conflicts, graph.sandboxes)
    first = draw_claims(graph, 100)
    assert draw_claims(graph, 100) == first
    assert draw_claims(shuffled, 100) == first


@pytest.mark.parametrize("width", [40, 60, 80, 120, 200])
def test_each_region_is_labelled_inside_its_box_and_no_line_crosses_a_label(width: int) -> None:
    canvas = draw_claims(small_graph(), width)
    assert_well_formed(canvas, width)
    assert not canvas.collapsed and canvas.hidden == 0
    assert {box.key for box in canvas.boxes} == {rid.partition("::")[0] for rid in small_graph().owners}
    text = "\n".join(canvas.lines)
    for name in ("quote", "round_minor_units", "subtotal", "render"):
        assert name in text if width >= 60 else name[-5:] in text  # cut from the start when narrow
    for box in canvas.boxes:  # every row of a box is inside its borders
        for y in range(box.y + 1, box.y + box.h - 1):
            assert char_at(canvas, box.x, y) in "│├┤" and char_at(canvas, box.x + box.w - 1, y) in "│├┤"


def test_a_conflict_path_is_drawn_heavy_with_its_regions_marked() -> None:
    canvas = draw_claims(small_graph(), 100)
    heavy = {char_at(canvas, x, y) for x, y in cells(canvas, ROLE_CONFLICT)}
    assert heavy & set("━┃┏┓┗┛┣┫┳┻╋") and "▶" in heavy
    marked = [line for line in canvas.lines if "!●" in line]
    assert len(marked) == 2 and any("quote" in line for line in marked)
    assert any("round_minor_units" in line for line in marked)
    # Without the conflict the same links are light.
    calm = draw_claims(ClaimsGraph(small_graph().owners, small_graph().links, (), small_graph().sandboxes), 100)
    assert not {char_at(calm, x, y) for x, y in cells(calm, ROLE_CONFLICT)} & set("━┃▶")
    assert calm.drawn == canvas.drawn == 4


def test_sandboxes_are_coloured_by_role_and_named_in_the_legend() -> None:
    canvas = draw_claims(small_graph(), 120)
    for sandbox in small_graph().sandboxes:
        assert cells(canvas, sandbox_role(sandbox)), sandbox
    legend = canvas.lines[1]
    assert legend.index("refunds") < legend.index("rounding") < legend.index("invoices") < legend.index("mail")


def test_the_filter_keeps_one_sandboxs_regions_and_their_neighbours() -> None:
    canvas = draw_claims(small_graph(), 100, sandbox="invoices")
    text = "\n".join(canvas.lines)
    assert "subtotal" in text and "round_minor_units" in text  # its own, and the one they use
    assert "quote" not in text and "render" not in text
    assert "filter: invoices" in text
    assert_well_formed(canvas, 100)


def test_the_zoom_shows_only_the_regions_on_the_conflicts_path() -> None:
    canvas = draw_claims(small_graph(), 100, conflict=0)
    text = "\n".join(canvas.lines)
    assert {box.key for box in canvas.boxes} == {"payments/refunds.py", "payments/currency.py"}
    assert "subtotal" not in text and "render" not in text
    assert canvas.drawn == 1 and "zoom: conflict 1 of 1" in text
    assert "━" in text


def test_at_200_sandboxes_boxes_count_regions_per_sandbox_and_fit_the_width() -> None:
    graph = big_graph()
    canvas = draw_claims(graph, 120)
    print(f"{len(graph.owners)} regions, {len(canvas.boxes)} boxes, {len(canvas.lines)} lines, "
          f"{canvas.drawn} links drawn, {canvas.hidden} left out")
    assert canvas.collapsed
    assert_well_formed(canvas, 120)
    assert len(canvas.boxes) <= 60  # one per directory, not one per region
    text = "\n".join(canvas.lines)
    assert "in conflict" in text and "more" in text  # counts, and the sandboxes a box cannot list
    assert "+" in canvas.lines[2] or "more" in canvas.lines[2]  # the legend says how many it leaves out
    # A filter on one sandbox draws its regions one by one again.
    mine = draw_claims(graph, 120, sandbox="agent-007")
    assert not mine.collapsed
    assert_well_formed(mine, 120)


def test_a_drawing_taller_than_the_view_pages_with_the_header_on_each_page() -> None:
    canvas = draw_claims(big_graph(sandboxes=20, regions=300), 80)
    height = 20
    pages = canvas.pages(height)
    assert pages > 1
    seen: list[str] = []
    for index in range(pages):
        lines, spans = canvas.page(index, height)
        assert len(lines) <= height and lines[:canvas.header] == canvas.lines[:canvas.header]
        assert all(0 <= s.line < len(lines) and s.end <= len(lines[s.line]) for s in spans)
        seen.extend(lines[canvas.header:])
    assert seen == list(canvas.lines[canvas.header:])


def test_untrusted_names_cannot_break_the_grid() -> None:
    evil = "pkg/\x1b[31mred\u754c.py::f\nnext"
    graph = ClaimsGraph({evil: ("agent\x07",), QUOTE: ("refunds",)}, (Link(evil, QUOTE, "calls"),), (),
                        ("agent\x07", "refunds"))
    canvas = draw_claims(graph, 60)
    assert_well_formed(canvas, 60)
    assert not any("\x1b" in line or "\x07" in line or "\n" in line or "\u754c" in line for line in canvas.lines)


def test_the_demo_repository_conflict_is_drawn_from_a_real_picture(tmp_path: Path) -> None:
    repo = demo_repo(tmp_path)
    coordinator = governed_coordinator(open_workspace(repo))
    coordinator.claim("refunds", QUOTE, reason="partial refunds")
    coordinator.claim("rounding", ROUNDING, reason="refactor rounding")
    graph = claims_graph(coordination_picture(coordinator))
    assert graph.sandboxes == ("refunds", "rounding")
    assert graph.owners[QUOTE] == ("refunds",) and graph.owners[ROUNDING] == ("rounding",)
    assert (QUOTE, ROUNDING) in graph.conflicts
    canvas = draw_claims(graph, 100)
    assert_well_formed(canvas, 100)
    assert "━" in "\n".join(canvas.lines) and canvas.hidden == 0
    zoomed = draw_claims(graph, 100, conflict=graph.conflicts.index((QUOTE, ROUNDING)))
    assert {box.key for box in zoomed.boxes} == {"payments/refunds.py", "payments/currency.py"}
