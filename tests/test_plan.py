"""The plan file (loomtui.workflow.plan): parsing with file:line errors, and conflict-aware scheduling."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from loomtui.errors import ConfigError, LoomError
from loomtui.workflow.plan import (
    Depends,
    Edge,
    Plan,
    PlanTask,
    claim_problems,
    coordinator_relations,
    load_plan,
    parse_plan,
    schedule,
)
from tests.conftest import git

PATH = "plan.yaml"

QUOTE = "payments/refunds.py::RefundService.quote"
ISSUE = "payments/refunds.py::RefundService.issue_refund"
ROUNDING = "payments/currency.py::round_minor_units"
SUBTOTAL = "payments/invoices.py::InvoiceCalculator.subtotal"
LEDGER = "payments/ledger.py::Ledger.refund"


def plan_of(text: str) -> Plan:
    return parse_plan(textwrap.dedent(text), PATH)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        plan_of(text)
    return str(info.value)


TWO_TASKS = """\
    version: 1
    tasks:
      - name: refunds
        task: Add partial refunds to the refunds API
        runtime: script
        script: .loom/demo/refunds.yaml
        claims: ["payments/refunds.py::RefundService.quote"]
        after: [templates]
      - name: templates
        task: Fix typos in notification templates
        runtime: claude
    """


# -- parsing --------------------------------------------------------------------------------


def test_a_plan_parses_with_defaults_and_lines() -> None:
    plan = plan_of(TWO_TASKS)
    assert plan.path == PATH
    assert plan.order == "callee-first"
    refunds, templates = plan.tasks
    assert refunds == PlanTask(name="refunds", task="Add partial refunds to the refunds API", runtime="script",
                               script=".loom/demo/refunds.yaml", claims=(QUOTE,), after=("templates",), line=3)
    assert (templates.script, templates.claims, templates.after, templates.line) == (None, (), (), 9)


def test_load_plan_reads_the_file_and_names_it_in_errors(tmp_path: Path) -> None:
    (tmp_path / ".loom").mkdir()
    (tmp_path / ".loom" / "plan.yaml").write_text(textwrap.dedent(TWO_TASKS))
    assert [t.name for t in load_plan(tmp_path, ".loom/plan.yaml").tasks] == ["refunds", "templates"]
    with pytest.raises(ConfigError, match=r"^\.loom/missing\.yaml: file not found$"):
        load_plan(tmp_path, ".loom/missing.yaml")


def test_unknown_key_names_its_line_and_the_likely_key() -> None:
    message = error_of("""\
        tasks:
          - name: refunds
            task: t
            runtime: script
            afer: [templates]
        """)
    assert message == "plan.yaml:5: tasks[0].afer: unknown key (did you mean 'after'?)"


def test_unknown_top_level_key() -> None:
    assert error_of("tasks: []\nordr: caller-first\n") == "plan.yaml:2: ordr: unknown key (did you mean 'order'?)"


def test_duplicate_name_points_at_the_first() -> None:
    message = error_of("""\
        tasks:
          - {name: refunds, task: a, runtime: script}
          - {name: rounding, task: b, runtime: script}
          - {name: refunds, task: c, runtime: script}
        """)
    assert message == "plan.yaml:4: tasks[2].name: duplicate task name 'refunds' (first defined on line 2)"


@pytest.mark.parametrize("name", ["Refunds", "-refunds", "re_funds", "a" * 41])
def test_a_bad_name_slug_is_refused(name: str) -> None:
    message = error_of(f"tasks:\n  - {{name: {name}, task: a, runtime: script}}\n")
    assert message.startswith(f"plan.yaml:2: tasks[0].name: invalid task name '{name}' (use lowercase letters")


def test_after_naming_an_unknown_task() -> None:
    message = error_of("""\
        tasks:
          - {name: refunds, task: a, runtime: script}
          - name: rounding
            task: b
            runtime: script
            after: [refund]
        """)
    assert message == "plan.yaml:6: tasks[1].after[0]: unknown task 'refund' (did you mean 'refunds'?)"


def test_after_naming_itself() -> None:
    message = error_of("tasks:\n  - {name: refunds, task: a, runtime: script, after: [refunds]}\n")
    assert message == "plan.yaml:2: tasks[0].after[0]: task 'refunds' cannot wait on itself"


def test_a_cycle_in_after_names_its_tasks_once() -> None:
    message = error_of("""\
        tasks:
          - {name: templates, task: a, runtime: script}
          - name: refunds
            task: b
            runtime: script
            after: [templates, rounding]
          - {name: invoices, task: c, runtime: script, after: [refunds]}
          - {name: rounding, task: d, runtime: script, after: [invoices]}
        """)
    assert message == ("plan.yaml:6: tasks refunds -> rounding -> invoices -> refunds form a cycle "
                       "(each waits on the next through `after:`)")


def test_a_bad_order_suggests_the_right_one() -> None:
    message = error_of("order: calee-first\ntasks:\n  - {name: a, task: a, runtime: script}\n")
    assert message == ("plan.yaml:1: order: must be one of callee-first, caller-first "
                       "(got 'calee-first'; did you mean 'callee-first'?)")


@pytest.mark.parametrize(("text", "expected"), [
    ("", "plan.yaml:1: the plan is empty (it needs a `tasks:` list)"),
    ("tasks: []\n", "plan.yaml:1: tasks: must list at least one task"),
    ("version: 1\n", "plan.yaml:1: tasks: required key missing"),
    ("version: 2\ntasks: [{name: a, task: a, runtime: s}]\n",
     "plan.yaml:1: version: unsupported version 2 (only 1 is supported)"),
    ("tasks:\n  - {name: a, task: a}\n", "plan.yaml:2: tasks[0].runtime: required key missing"),
    ("tasks:\n  - {name: a, task: '  ', runtime: s}\n", "plan.yaml:2: tasks[0].task: must not be empty"),
    ("tasks:\n  - {name: a, task: a, runtime: s, claims: x.py}\n",
     "plan.yaml:2: tasks[0].claims: expected a list (got 'x.py')"),
    ("tasks:\n  - {name: a, task: a, runtime: s, script: ../outside.yaml}\n",
     "plan.yaml:2: tasks[0].script: must be a path inside the repository, relative to its root "
     "(got '../outside.yaml')"),
])
def test_other_mistakes_name_file_and_line(text: str, expected: str) -> None:
    assert error_of(text) == expected


# -- scheduling with fake relations ------------------------------------------------------------


def task(name: str, *claims: str, after: tuple[str, ...] = (), line: int = 1) -> PlanTask:
    return PlanTask(name=name, task=f"do {name}", runtime="script", script=None, claims=claims, after=after,
                    line=line)


def regions(target: str) -> list[str]:
    """Each target is its own region, except a glob of two files; `missing` is unknown."""
    if target == "missing":
        raise LoomError("missing: no such file or region in /repo")
    if target == "templates/*.txt":
        return ["templates/a.txt", "templates/b.txt"]
    return [target]


def uses(*pairs: tuple[str, str]) -> Depends:
    """A `depends` where each (a, b) means region a calls region b."""
    def depends(a: str, b: str) -> str | None:
        return f"{a} -references-> {b}" if (a, b) in pairs else None
    return depends


def no_uses(a: str, b: str) -> str | None:
    return None


def plan(*tasks: PlanTask, order: str = "callee-first") -> Plan:
    return Plan(path=PATH, tasks=tasks, order=order)


def test_overlapping_claims_never_run_at_once_written_first_goes_first() -> None:
    result = schedule(plan(task("a", LEDGER), task("b", LEDGER), task("c", "templates/*.txt")), regions, no_uses)
    assert result.edges == (Edge("a", "b", f"both claim {LEDGER}: never at once, in file order", "overlap"),)
    assert result.waves == (("a", "c"), ("b",))


def test_tasks_on_one_file_wait_each_on_the_one_before_not_on_all_before_it() -> None:
    """Pairs were met first with first: twelve tasks on one file had 66 edges, the last waiting on eleven (and the
    app said "why: both claim ..." eleven times). A written `after:` stays, implied or not."""
    names = [f"t{n}" for n in range(5)]
    chain = schedule(plan(*(task(name, LEDGER) for name in names)), regions, no_uses)
    assert [(e.before, e.after) for e in chain.edges] == list(zip(names, names[1:]))
    assert chain.waves == tuple((name,) for name in names) and chain.waits_on("t4") == ("t0", "t1", "t2", "t3")
    written = schedule(plan(task("a", LEDGER), task("b", LEDGER), task("c", LEDGER, after=["a"])), regions, no_uses)
    assert sorted((e.before, e.after, e.kind) for e in written.edges) == [
        ("a", "b", "overlap"), ("a", "c", "after"), ("b", "c", "overlap")]


def test_nested_regions_overlap_and_say_so() -> None:
    result = schedule(plan(task("a", "payments/refunds.py"), task("b", QUOTE)), regions, no_uses)
    (edge,) = result.edges
    assert (edge.before, edge.after, edge.kind) == ("a", "b", "overlap")
    assert edge.reason.startswith(f"a claims payments/refunds.py and b claims {QUOTE}, one inside the other")
    # A property's getter and its setter: one name defined again, as the claim check says (not nested).
    (twice,) = schedule(plan(task("a", "m.py::C.file"), task("b", "m.py::C.file#2")), regions, no_uses).edges
    assert twice.reason.startswith("a claims m.py::C.file and b claims m.py::C.file#2, one name, defined again")


def test_a_dependency_puts_the_callee_first() -> None:
    result = schedule(plan(task("refunds", QUOTE, ISSUE), task("rounding", ROUNDING)),
                      regions, uses((QUOTE, ROUNDING)))
    (edge,) = result.edges
    assert (edge.before, edge.after, edge.kind) == ("rounding", "refunds", "dependency")
    assert edge.reason == (f"rounding changes {ROUNDING}, which refunds uses "
                           f"({QUOTE} -references-> {ROUNDING}): callee first")
    assert result.waves == (("rounding",), ("refunds",))
    assert result.waits_on("refunds") == ("rounding",)
    assert result.waits_on("rounding") == ()


def test_caller_first_puts_the_caller_first() -> None:
    result = schedule(plan(task("rounding", ROUNDING), task("refunds", QUOTE), order="caller-first"),
                      regions, uses((QUOTE, ROUNDING)))
    (edge,) = result.edges
    assert (edge.before, edge.after, edge.kind) == ("refunds", "rounding", "dependency")
    assert edge.reason.endswith(f"which uses rounding's {ROUNDING} ({QUOTE} -references-> {ROUNDING}): caller first")


def test_a_dependency_directs_an_overlap() -> None:
    # b claims a method of a's class and a helper that a's method calls: a's change waits for b's.
    result = schedule(plan(task("a", "m.py::C", "m.py::C.f"), task("b", "m.py::C.f", "m.py::helper")),
                      regions, uses(("m.py::C", "m.py::helper")))
    (edge,) = result.edges
    assert (edge.before, edge.after, edge.kind) == ("b", "a", "overlap")
    assert edge.reason.startswith("both claim m.py::C.f (and 1 more overlapping pair): never at once; b changes")


def test_written_after_is_kept_and_an_implicit_edge_never_contradicts_it() -> None:
    # callee-first would put rounding first, but the plan says rounding waits on refunds.
    result = schedule(plan(task("refunds", QUOTE), task("rounding", ROUNDING, after=("refunds",))),
                      regions, uses((QUOTE, ROUNDING)))
    assert result.edges == (Edge("refunds", "rounding", "rounding waits on refunds, as the plan says", "after"),)
    assert result.waves == (("refunds",), ("rounding",))


def test_an_implicit_edge_is_skipped_when_already_implied_transitively() -> None:
    # c after b after a, written; a and c overlap: already ordered, so no extra edge.
    result = schedule(plan(task("a", LEDGER), task("b", after=("a",)), task("c", LEDGER, after=("b",))),
                      regions, no_uses)
    assert [e.kind for e in result.edges] == ["after", "after"]
    assert result.waits_on("c") == ("a", "b")


def test_dependency_order_wins_over_file_order() -> None:
    # a calls b, b calls c, a and c overlap. Callee first gives c, b, a; taking the overlap in file
    # order (a before c) first would force the b -> c dependency to be dropped.
    result = schedule(
        plan(task("a", "x.py::A", "shared.py::S"), task("b", "x.py::B"), task("c", "x.py::C", "shared.py::S")),
        regions, uses(("x.py::A", "x.py::B"), ("x.py::B", "x.py::C")))
    assert result.waves == (("c",), ("b",), ("a",))
    assert {(e.before, e.after, e.kind) for e in result.edges} == {("b", "a", "dependency"),
                                                                    ("c", "b", "dependency")}


def test_tasks_that_use_each_other_go_in_file_order() -> None:
    result = schedule(plan(task("a", "x.py::A"), task("b", "x.py::B")),
                      regions, uses(("x.py::A", "x.py::B"), ("x.py::B", "x.py::A")))
    (edge,) = result.edges
    assert (edge.before, edge.after, edge.kind) == ("a", "b", "dependency")
    assert "use each other's regions" in edge.reason


def test_overlap_ordered_both_ways_is_impossible() -> None:
    # parse_plan refuses such a plan; schedule refuses one built by hand too.
    cyclic = plan(task("a", LEDGER, after=("b",), line=2), task("b", LEDGER, after=("a",), line=3))
    with pytest.raises(ConfigError) as info:
        schedule(cyclic, regions, no_uses)
    assert str(info.value) == (f"plan.yaml:2: tasks a and b claim overlapping regions {LEDGER} "
                               "but the plan's `after:` orders them both ways")


def test_a_cycle_without_overlap_in_a_hand_built_plan_is_refused() -> None:
    cyclic = plan(task("a", after=("b",), line=2), task("b", after=("a",), line=3))
    with pytest.raises(ConfigError, match=r"^plan\.yaml:2: tasks a -> b -> a form a cycle"):
        schedule(cyclic, regions, no_uses)


def test_an_unknown_claim_target_names_its_own_line_and_every_one_is_said() -> None:
    """Only the first bad claim of a task was said, at the task's first line."""
    parsed = plan_of("""\
        tasks:
          - {name: refunds, task: a, runtime: script, claims: [x.py]}
          - name: rounding
            task: b
            runtime: script
            claims:
              - missing
              - x.py
              - gone.py
        """)
    with pytest.raises(ConfigError) as info:
        schedule(parsed, regions, no_uses)
    assert str(info.value) == "plan.yaml:7: task rounding: missing: no such file or region in /repo"
    def fewer(target: str) -> list[str]:
        if target == "gone.py":
            raise LoomError("gone.py: no such file or region in /repo")
        return regions(target)

    assert [(p.line, str(p).split(": ", 2)[2]) for p in claim_problems(parsed, fewer)] == [
        (7, "missing: no such file or region in /repo"), (9, "gone.py: no such file or region in /repo")]


def test_waves_and_json() -> None:
    result = schedule(plan(task("refunds", QUOTE), task("rounding", ROUNDING), task("templates", "templates/*.txt"),
                           task("notify", after=("templates",))),
                      regions, uses((QUOTE, ROUNDING)))
    assert result.waves == (("rounding", "templates"), ("refunds", "notify"))
    assert [(e.before, e.after) for e in result.edges] == [("rounding", "refunds"), ("templates", "notify")]
    data = json.loads(json.dumps(result.as_dict()))
    assert data["waves"] == [["rounding", "templates"], ["refunds", "notify"]]
    assert [t["waits_on"] for t in data["tasks"]] == [["rounding"], [], [], ["templates"]]
    assert data["edges"][0]["kind"] == "dependency"
    with pytest.raises(LoomError, match="nope: no such task in plan.yaml"):
        result.waits_on("nope")


# -- the real sample repository ---------------------------------------------------------------


def test_the_demo_plan_on_the_real_graph_puts_rounding_first(billing: Path) -> None:
    from loomtui.coordination.claims import nobody_overrides, open_coordinator
    from loomtui.workspace import open_workspace

    # The demo's own plan (sample_repo/.loom/plan.yaml): its four agents and their claims.
    parsed = load_plan(billing, ".loom/plan.yaml")
    workspace = open_workspace(billing)
    try:
        regions_of, depends = coordinator_relations(open_coordinator(workspace, may_override=nobody_overrides))
        result = schedule(parsed, regions_of, depends)
        # refunds' quote and invoices' subtotal call round_minor_units directly (sample_repo/payments):
        # one hop, within the sample repo's `dependency_hops: 1`.
        assert [(e.before, e.after, e.kind) for e in result.edges] == [("rounding", "refunds", "dependency"),
                                                                       ("rounding", "invoices", "dependency")]
        assert result.edges[0].reason == (f"rounding changes {ROUNDING}, which refunds uses "
                                          f"({QUOTE} -references-> {ROUNDING}): callee first")
        assert f"({SUBTOTAL} -references-> {ROUNDING})" in result.edges[1].reason
        assert result.waves == (("rounding", "templates"), ("refunds", "invoices"))
        assert depends(ROUNDING, QUOTE) is None  # the direction is real: rounding does not use refunds

        caller_first = schedule(Plan(parsed.path, parsed.tasks, "caller-first"), regions_of, depends)
        assert [(e.before, e.after) for e in caller_first.edges] == [("refunds", "rounding"), ("invoices", "rounding")]
        assert caller_first.waves == (("refunds", "invoices", "templates"), ("rounding",))
        # A claim on the whole module covers the method that makes the call.
        assert depends("payments/refunds.py", ROUNDING) is not None
    finally:
        workspace.close()


def test_a_caller_of_a_class_depends_on_its_constructor(billing: Path) -> None:
    """`Entry(...)` is an edge to the class, never to `Entry.__init__`: a task changing the constructor and one
    changing its caller ran in one wave, while the claim checks warned of the pair."""
    from loomtui.coordination.claims import nobody_overrides, open_coordinator
    from loomtui.workspace import open_workspace

    (billing / "payments" / "entry.py").write_text(
        "class Entry:\n    def __init__(self, amount):\n        self.amount = amount\n")
    (billing / "payments" / "book.py").write_text(
        "from payments.entry import Entry\n\n\ndef book(amount):\n    return Entry(amount)\n")
    git(billing, "add", "-A")
    git(billing, "commit", "-q", "-m", "entries")
    workspace = open_workspace(billing)
    try:
        _regions_of, depends = coordinator_relations(open_coordinator(workspace, may_override=nobody_overrides))
        said = depends("payments/book.py::book", "payments/entry.py::Entry.__init__")
        assert said is not None and "payments/entry.py::Entry" in said, said
        assert depends("payments/entry.py::Entry.__init__", "payments/book.py::book") is None
    finally:
        workspace.close()


def test_every_problem_of_a_plan_is_said_at_once() -> None:
    """A duplicate name, an unknown `after:`, a task waiting on itself: each run named the first, and a plan of
    five mistakes took five runs to find them. Claim targets that name nothing, all of them too."""
    from loomtui.yamlcheck import ConfigErrors

    with pytest.raises(ConfigErrors) as info:
        plan_of("""\
            tasks:
              - {name: a, task: one, runtime: script}
              - {name: a, task: two, runtime: script}
              - {name: b, task: three, runtime: script, after: [zz]}
              - {name: c, task: four, runtime: script, after: [c]}
              - {name: d, task: five, runtime: script, after: [e]}
              - {name: e, task: six, runtime: script, after: [d]}
            """)
    # The cycle too (it was found only once the others were fixed).
    assert [str(problem) for problem in info.value.problems] == [
        "plan.yaml:3: tasks[1].name: duplicate task name 'a' (first defined on line 2)",
        "plan.yaml:4: tasks[2].after[0]: unknown task 'zz'",
        "plan.yaml:5: tasks[3].after[0]: task 'c' cannot wait on itself",
        "plan.yaml:6: tasks d -> e -> d form a cycle (each waits on the next through `after:`)"]
    parsed = plan_of("""\
        tasks:
          - {name: a, task: one, runtime: script, claims: [missing]}
          - {name: b, task: two, runtime: script, claims: [missing]}
        """)
    with pytest.raises(ConfigErrors) as both:
        schedule(parsed, regions, no_uses)
    assert [problem.line for problem in both.value.problems] == [2, 3]


def test_plan_show_lists_every_problem_each_on_its_line(billing: Path) -> None:
    """The tasks', their runtimes' and their claims' problems in one run (each stage stopped the next: three
    runs for one file); a task waited on that has a problem of its own is no unknown task."""
    from tests.conftest import run_cli

    (billing / "bad.yaml").write_text("tasks:\n  - {name: a, task: '', runtime: script}\n"
                                      "  - {name: b, task: two, runtime: nosuch, after: [a]}\n"
                                      "  - {name: c, task: three, runtime: script, script: nowhere.yaml}\n"
                                      "  - {name: d, task: four, runtime: command, claims: [nothing/here.py]}\n")
    shown = run_cli(billing, "plan", "show", "bad.yaml")
    lines = shown.stderr.splitlines()
    assert shown.returncode == 2 and [line.split(": ")[2] for line in lines] == [
        "bad.yaml:2", "bad.yaml:3", "bad.yaml:4", "bad.yaml:5", "bad.yaml:5"], lines
    assert "tasks[0].task: must not be empty" in lines[0] and "unknown task" not in shown.stderr
    assert "task b: unknown runtime 'nosuch'" in lines[1] and "nowhere.yaml: no such script file" in lines[2]
    assert "task d: runtime 'command' runs the program given" in lines[3] and "task d: nothing/here.py" in lines[4]
    # And what puts it right: a plan has nowhere to give a program, so a runtime that names one.
    assert lines[3].endswith("; name a runtime in .loom/loom.yaml whose argv runs the program (runtimes: {mytool: "
                             "{argv: [mytool, --prompt, '{task}']}}) and give that"), lines[3]
    listed = json.loads(run_cli(billing, "plan", "show", "bad.yaml", "--json").stdout)
    assert listed["ok"] is False and len(listed["problems"]) == 5
    # One problem: the same shape for a script.
    (billing / "one.yaml").write_text("tasks:\n  - {name: a, task: one, runtime: nosuch}\n")
    one = run_cli(billing, "plan", "show", "one.yaml", "--json")
    assert one.returncode == 2 and json.loads(one.stdout)["problems"] == [
        "one.yaml:2: task a: unknown runtime 'nosuch' (configured: aider, claude, codex, command, script)"]
    # In a subdirectory, FILE as the shell names it there (it was read from the root: `file not found`), named
    # from the root; one only the root has is still found.
    (billing / "plans").mkdir()
    (billing / "plans" / "two.yaml").write_text("tasks:\n  - {name: a, task: one, runtime: other}\n")
    two = run_cli(billing / "plans", "plan", "show", "two.yaml", "--json")
    assert two.returncode == 2 and json.loads(two.stdout)["problems"][0].startswith(
        "plans/two.yaml:2: task a: unknown runtime 'other'"), two.stdout
    one = run_cli(billing / "plans", "plan", "show", "one.yaml", "--json")
    assert json.loads(one.stdout)["problems"][0].startswith("one.yaml:2: task a: unknown runtime 'nosuch'")
