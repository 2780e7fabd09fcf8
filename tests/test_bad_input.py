"""Bad input (issue #8): one line on stderr, exit 2, nothing stored; never a traceback or a hang."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from loomtui.governance.coordinator import governed_coordinator
from loomtui.config import MAX_LEASE_SECONDS, parse_config
from loomtui.coordination.claims import Coordinator, lease_length
from loomtui.errors import ConfigError, LoomError
from loomtui.governance.policy import parse_policy
from loomtui.workspace import open_workspace
from loomtui.yamlcheck import MAX_FILE_BYTES, read_text
from tests.conftest import demo_repo, git, run_cli

LOOMTUI = shutil.which("loomtui") or "loomtui"
REFUNDS = "payments/refunds.py"
QUOTE = "payments/refunds.py::RefundService.quote"


@pytest.fixture(scope="module")
def billing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_repo(tmp_path_factory.mktemp("billing"))


@pytest.fixture
def repo(billing: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "billing"
    git(tmp_path, "clone", "-q", str(billing), str(copy))
    return copy


@pytest.fixture
def coordinator(repo: Path) -> Coordinator:
    return governed_coordinator(open_workspace(repo))


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LOOMTUI, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def assert_one_line_error(done: subprocess.CompletedProcess[str], needle: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert needle in done.stderr, done.stderr


def assert_nothing_stored(coordinator: Coordinator) -> None:
    assert coordinator.store.live_claims() == []
    assert list(coordinator.workspace.audit.entries()) == []


def refunds_lines(repo: Path) -> int:
    return len((repo / REFUNDS).read_text().splitlines())


# -- 1. line ranges ---------------------------------------------------------------------


def test_a_range_past_the_end_of_the_file_is_refused_without_materialising_it(
        coordinator: Coordinator, repo: Path) -> None:
    count = refunds_lines(repo)
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(LoomError, match=rf"line 10000000 is past the end of {REFUNDS} \({count} lines\)"):
        coordinator.claim("a", f"{REFUNDS}:1-10000000")  # 4.6 s and 438 MB before the fix
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 2 and peak < 20_000_000
    assert_nothing_stored(coordinator)


@pytest.mark.parametrize(("suffix", "message"), [
    ("0-0", "line numbers start at 1"),
    ("0", "line numbers start at 1"),
    ("50-40", "the range ends before it starts"),
    ("LAST+1", "is past the end of payments/refunds.py"),  # a line past the end would claim the module
    ("1-LAST+1", "is past the end of payments/refunds.py"),
    ("9" * 5000, "is past the end of payments/refunds.py"),  # more digits than int() converts
])
def test_bad_line_ranges_are_one_clear_error(coordinator: Coordinator, repo: Path, suffix: str,
                                             message: str) -> None:
    suffix = suffix.replace("LAST+1", str(refunds_lines(repo) + 1))
    with pytest.raises(LoomError, match=message) as raised:
        coordinator.claim("a", f"{REFUNDS}:{suffix}")
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 400
    assert_nothing_stored(coordinator)


def test_the_last_line_and_ranges_on_unparsed_files_are_checked_too(coordinator: Coordinator, repo: Path) -> None:
    count = refunds_lines(repo)
    assert coordinator.resolve(f"{REFUNDS}:{count}") != [REFUNDS]  # the last line is inside a function
    template = "notifications/templates/refund_issued.txt"
    lines = len((repo / template).read_text().splitlines())
    assert coordinator.resolve(f"{template}:1-{lines}") == [template]
    with pytest.raises(LoomError, match=rf"past the end of {template} \({lines} lines\)"):
        coordinator.resolve(f"{template}:1-{lines + 1}")


def test_an_edit_check_with_a_huge_span_is_bounded_by_the_file(coordinator: Coordinator) -> None:
    # The edit hook and the sandbox broker pass line numbers from an agent.
    started = time.perf_counter()
    decision = coordinator.check_edit("a", REFUNDS, (1, 10**12))
    assert time.perf_counter() - started < 2
    assert decision.verdict == "claim" and REFUNDS in decision.regions


def test_cli_range_error_is_one_line_and_stores_nothing(repo: Path) -> None:
    assert_one_line_error(run(repo, "claim", "add", "--sandbox", "a", f"{REFUNDS}:1-10000000"),
                          "is past the end of payments/refunds.py")
    assert_nothing_stored(governed_coordinator(open_workspace(repo)))


# -- 2. leases ------------------------------------------------------------------------------


BAD_TTLS = [math.nan, math.inf, -math.inf, -5, 0, float("1e309"), MAX_LEASE_SECONDS + 1]


@pytest.mark.parametrize("ttl", BAD_TTLS)
def test_a_lease_must_be_finite_positive_and_at_most_30_days(coordinator: Coordinator, ttl: float) -> None:
    with pytest.raises(LoomError, match="lease"):
        coordinator.claim("a", QUOTE, ttl=ttl)
    assert_nothing_stored(coordinator)


def test_renew_validates_the_lease_and_stores_nothing_on_a_bad_one(coordinator: Coordinator) -> None:
    claim = coordinator.claim("a", QUOTE, ttl=60).claim
    entries = len(list(coordinator.workspace.audit.entries()))
    for ttl in BAD_TTLS:
        with pytest.raises(LoomError, match="lease"):
            coordinator.renew(claim.id, ttl=ttl)
    assert coordinator.store.get_claim(claim.id).expires == claim.expires  # type: ignore[union-attr]
    assert len(list(coordinator.workspace.audit.entries())) == entries
    assert lease_length(MAX_LEASE_SECONDS) == MAX_LEASE_SECONDS and lease_length(0.05) == 0.05


@pytest.mark.parametrize(("command", "ttl"), [
    ("add", "nan"), ("add", "0"), ("add", "1e309"), ("add", "2592001"), ("renew", "-5"), ("renew", "soon"),
])
def test_cli_ttl_is_checked_before_anything_runs(tmp_path: Path, command: str, ttl: str) -> None:
    # argparse refuses it: no repository is even opened.
    target = ["--sandbox", "a", REFUNDS] if command == "add" else ["1"]
    assert_one_line_error(run(tmp_path, "claim", command, *target, "--ttl", ttl), "argument --ttl")


def test_lease_seconds_in_the_config_has_the_same_maximum() -> None:
    with pytest.raises(ConfigError, match=r"x.yaml:2: coordination.lease_seconds: must be at most 2592000"):
        parse_config("coordination:\n  lease_seconds: 99999999999999999999\n", "x.yaml")


def test_numbers_past_what_their_use_holds_are_refused_where_they_are_written() -> None:
    """Each passed `config check`, `policy validate` or `script-agent --check`, then failed at its use: every
    sandbox's limits lost (memory too), an override's internal error (or one for 11 million years), a
    script agent's internal error."""
    from loomtui.execution.script_agent import parse_script

    with pytest.raises(ConfigError, match=r"^x.yaml:1: limits.processes: must be between 16 and 4194304"):
        parse_config("limits: {processes: 100000000000000000000000000000}\n", "x.yaml")
    policy = "version: 1\noverrides:\n  groups: [leads]\n  max_hours: {hours}\ngroups:\n  leads: [a@b.c]\n"
    for hours in ("1" + "0" * 320, "100000000000"):
        with pytest.raises(ConfigError, match=r"^p.yaml:4: overrides.max_hours: must be between 1 and 8760"):
            parse_policy(policy.format(hours=hours), "p.yaml")
    assert parse_policy(policy.format(hours=8760), "p.yaml").overrides.max_hours == 8760
    for step, key in (("- {after: 1.0e+308, log: x}", "after"), ("- {after: 1" + "0" * 400 + ", log: x}", "after"),
                      ("- {log: x, repeat: 2, every: 100000}", "every")):
        with pytest.raises(LoomError, match=rf"^s.yaml:1: \[0\]\.{key}: (may be at most 86400|must be a finite)"):
            parse_script(step + "\n", "s.yaml")
    # YAML 1.1 reads an exponent without its sign (or a mantissa without its dot) as text: said how to write it.
    for written, fixed in (("1.0e308", "1.0e+308"), ("1e-5", "1.0e-5"), ("-.5e3", "-0.5e+3")):
        with pytest.raises(ConfigError, match=rf"^x.yaml:1: gates\[0\].timeout: expected a number \(got "
                                              rf"'{re.escape(written)}'\); YAML reads such an exponent as text: "
                                              rf"write {re.escape(fixed)}$"):
            parse_config(f"gates: [{{name: t, run: [x], timeout: {written}}}]\n", "x.yaml")
        assert isinstance(yaml.safe_load(fixed), float)  # what it says to write is a number
    with pytest.raises(ConfigError, match=r"expected a number \(got '1e5'\)$"):  # quoted: no exponent hint
        parse_config('gates: [{name: t, run: [x], timeout: "1e5"}]\n', "x.yaml")


# -- 3. invalid character classes -------------------------------------------------------------


def test_an_invalid_character_class_in_a_claim_target_is_one_error(coordinator: Coordinator, repo: Path) -> None:
    with pytest.raises(LoomError, match=r"payments/\[z-a\]\.py: invalid glob"):
        coordinator.claim("a", "payments/[z-a].py")
    assert_nothing_stored(coordinator)
    assert_one_line_error(run(repo, "claim", "add", "--sandbox", "a", "payments/[z-a].py"), "invalid glob")


@pytest.mark.parametrize(("condition", "key"), [
    ('regions: ["payments/[z-a].py::RefundService"]', "rules[0].when.regions[0]"),
    ('paths: ["payments/[z-a]/**"]', "rules[0].when.paths[0]"),
])
def test_an_invalid_character_class_in_a_policy_names_file_line_and_key(condition: str, key: str) -> None:
    text = f"version: 1\nrules:\n  - name: r\n    when:\n      {condition}\n    decision: block\n"
    with pytest.raises(ConfigError, match=rf"^policy.yaml:5: {re.escape(key)}: invalid (region )?glob"):
        parse_policy(text, "policy.yaml")


def test_an_invalid_character_class_in_the_config_globs_names_file_line_and_key() -> None:
    with pytest.raises(ConfigError, match=r"^loom.yaml:3: coordination.exclude\[0\]: invalid glob"):
        parse_config("coordination:\n  exclude:\n    - 'tests/[z-a]'\n", "loom.yaml")

# -- 4 and 6. argparse: numbers, and every usage error in one line ----------------------------


@pytest.mark.parametrize(("args", "needle"), [
    (["audit", "tail", "-n", "-5"], "loomtui audit tail: error: argument -n: must be 0 or more"),
    (["audit", "tail", "-n", "many"], "argument -n: expected an integer"),
    (["claim", "add"], ("loomtui claim add: error: the following arguments are required: TARGET "
                        "(see loomtui claim add --help)")),
    (["claim"], "loomtui claim: error: name a command: add, release, renew, list, suggest"),
    (["--bogus"], "loomtui: error: unrecognized arguments: --bogus (see loomtui --help)"),
    (["eval", "abc123", "--baseline", "HEAD"], "loomtui: error: SANDBOX and --baseline ask for different evals"),
    (["eval", "--baseline", "HEAD", "--merged"], "--baseline and --merged ask for different evals; give one"),
    (["eval", "--baseline", ""], "--baseline '': name a commit, or give --baseline alone for HEAD"),
    (["claim", "suggest", "--task", "x"], ("loomtui claim suggest: error: unrecognized arguments: --task "
                                           "(see loomtui claim suggest --help)")),
    (["claim", "release", "99999999999999999999999"], "argument CLAIM_ID: too large"),
    (["claim", "release", "0"], "argument CLAIM_ID: not an id"),
    (["claim", "suggest", "--limit", "-3", "x"], "argument --limit: must be 1 or more"),
    (["bench", "evals", "--sandboxes", "-1"], "argument --sandboxes: must be 1 or more"),
    (["bench", "report", "--days", "0"], "argument --days: must be 1 or more"),
    (["bench", "audit", "--rounds", "0"], "argument --rounds: must be 1 or more"),
    (["report", "--json", "--format", "markdown"], "--json and --format markdown ask for two formats"),
    (["escalation", "approve", "99999999999999999999999"], "argument ID: too large"),
    (["escalation", "override", "1", "--reason", "r", "--hours", "nan"], "argument --hours: must be a finite"),
    (["sandbox", "logs", "x", "-n", "-1"], "argument -n: must be 0 or more"),
    (["sandbox", "stop", "x", "--grace", "nan"], "argument --grace: must be a finite"),
    (["hook", "install", "--timeout", "-1"], "argument --timeout: must be more than 0"),
    (["bench", "sandboxes", "--count", "0"], "argument --count: must be 1 or more"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    assert_one_line_error(run(tmp_path, *args), needle)


# -- 5. files read as config are bounded ------------------------------------------------------


def test_a_device_a_fifo_and_a_huge_file_are_refused_as_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        read_text(Path("/dev/zero"), "/dev/zero")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        read_text(fifo, "fifo")  # refused at once, not waiting for a writer
    with pytest.raises(ConfigError, match="dir: cannot read file: it is a directory"):
        read_text(tmp_path, "dir")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="big.yaml: too large"):
        read_text(big, "big.yaml")
    big.write_bytes(b"#" * MAX_FILE_BYTES)
    assert len(read_text(big, "big.yaml")) == MAX_FILE_BYTES


def test_cli_policy_test_on_dev_zero_is_one_line(repo: Path) -> None:
    assert_one_line_error(run(repo, "policy", "test", "/dev/zero"), "/dev/zero: not a regular file")
    assert_one_line_error(run(repo, "policy", "validate", "/dev/zero"), "/dev/zero: not a regular file")


# -- 7. untrusted text stays on one line ------------------------------------------------------


def test_a_target_with_a_newline_is_quoted_in_the_error(coordinator: Coordinator, repo: Path) -> None:
    with pytest.raises(LoomError) as raised:
        coordinator.claim("a", "pay\nments/x.py")
    assert str(raised.value) == ("'pay\\nments/x.py': its name holds a line break, so loomtui cannot claim it "
                                 "(and no file is so named)")
    done = run(repo, "claim", "add", "--sandbox", "a", "pay\nments/x.py", "\x1b[31mred.py")
    assert_one_line_error(done, "'pay\\nments/x.py'")
    assert "\x1b" not in done.stderr
    assert_one_line_error(run(repo, "regions", "a\nb.py"), "'a\\nb.py'")
    assert_one_line_error(run(repo, "policy", "validate", "x\ny.yaml"), "'x\\ny.yaml': file not found")


def test_a_user_name_with_a_control_character_is_refused_before_it_reaches_the_audit_log(
        coordinator: Coordinator, repo: Path) -> None:
    forged = "evil\n    99  2026-12-02 16:00:00  lead@example.com  escalation.override  1"
    done = subprocess.run([LOOMTUI, "claim", "add", "--sandbox", "nl", QUOTE], cwd=repo, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "LOOM_USER": forged})
    assert_one_line_error(done, "LOOM_USER 'evil\\n    99")
    assert "holds a control character" in done.stderr
    assert_nothing_stored(coordinator)
    git(repo, "config", "user.email", "a\x1b[2Jb@example.com")
    with pytest.raises(LoomError, match="git's user.email .* holds a control character"):
        open_workspace(repo).record("test", "x")


def test_every_loom_error_is_one_line() -> None:
    assert str(LoomError("a\nb\x1b[2Jc")) == "a\\nb\\x1b[2Jc"
    assert str(ConfigError("p\nq", 3, "bad")) == "'p\\nq':3: bad"


# -- 8. renewing a claim is audited --------------------------------------------------------------


def test_renew_writes_an_audit_entry_with_the_new_expiry(coordinator: Coordinator) -> None:
    claim = coordinator.claim("a", QUOTE, ttl=60).claim
    renewed = coordinator.renew(claim.id, ttl=600)
    entry = list(coordinator.workspace.audit.entries())[-1]
    assert (entry.action, entry.subject) == ("claim.renewed", "a")
    assert entry.details["claim"] == claim.id and entry.details["expires"] == renewed.expires
    assert coordinator.workspace.audit.verify().ok
    count = len(list(coordinator.workspace.audit.entries()))
    # Shortening is no renewal: it would free another sandbox's region without an override.
    with pytest.raises(LoomError, match="a renewal only extends a lease") as shortened:
        coordinator.renew(claim.id, ttl=1)
    assert shortened.value.exit_code == 1
    assert coordinator.store.get_claim(claim.id).expires == renewed.expires  # type: ignore[union-attr]
    assert len(list(coordinator.workspace.audit.entries())) == count
    coordinator.release(claim.id)
    count = len(list(coordinator.workspace.audit.entries()))
    with pytest.raises(LoomError, match="not live"):
        coordinator.renew(claim.id)
    assert len(list(coordinator.workspace.audit.entries())) == count


def test_cli_renew_is_audited(repo: Path) -> None:
    claim = governed_coordinator(open_workspace(repo)).claim("a", QUOTE, ttl=60).claim
    done = run(repo, "claim", "renew", str(claim.id), "--ttl", "900")
    assert done.returncode == 0, done.stderr
    entries = list(open_workspace(repo).audit.entries())
    assert entries[-1].action == "claim.renewed" and entries[-1].details["claim"] == claim.id


# -- more of the same kind -----------------------------------------------------------------------


def test_bench_index_on_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run(tmp_path, "bench", "index", str(tmp_path / "missing")), "not a directory")


def test_a_bench_of_a_tree_with_no_python_file_says_so_in_one_line(tmp_path: Path) -> None:
    """`bench index` ended on "ValueError: /tmp/loomtui-bench-…/e: not a directory" (a path of its own), and
    `bench hook` on "cannot run git in …/repo"."""
    empty = tmp_path / "e"
    empty.mkdir()
    (empty / "notes.txt").write_text("no code here\n")
    for bench, said in (("index", "no Python file to index"), ("hook", "the hook benchmark edits a tree of Python")):
        done = run_cli(tmp_path, "bench", bench, str(empty), *(("--calls", "1") if bench == "hook" else ()))
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith(f"loomtui: error: {empty}: {said}")


def test_bench_index_with_a_path_and_the_corpus_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run(tmp_path, "bench", "index", str(tmp_path), "--corpus"), "not both")


def test_a_script_that_is_not_a_regular_file_is_refused_not_read(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "loomtui", "script-agent", "--check", "/dev/zero"],
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_loop_of_symlinks_is_one_line_wherever_a_target_is_named(repo: Path) -> None:
    (repo / "l1.py").symlink_to("l2.py")
    (repo / "l2.py").symlink_to("l1.py")
    for args in (("claim", "add", "--sandbox", "a", "l1.py"), ("regions", "l1.py"),
                 ("context", "slice", "--task", "x", "--claim", "l1.py")):
        done = run_cli(repo, *args)
        assert_one_line_error(done, "l1.py: its symlinks form a loop")


def test_an_escalation_id_past_the_stores_integers_is_a_usage_error(repo: Path) -> None:
    for number in ("9223372036854775808", "99999999999999999999999"):
        assert_one_line_error(run_cli(repo, "escalation", "show", number), "too large")
    assert_one_line_error(run_cli(repo, "escalation", "show", "999"), "no escalation #999")


def test_hook_install_over_a_settings_file_that_is_not_utf8_is_one_line(repo: Path) -> None:
    settings = repo / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_bytes(b"\xff{}")
    assert_one_line_error(run_cli(repo, "hook", "install"), "settings.json:1: not valid UTF-8 (byte 0xff at column 1)")
    assert settings.read_bytes() == b"\xff{}"  # left as it was
