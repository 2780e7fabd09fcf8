"""The app's config and policy, read again when their files change (`loomtui.tui.settings_watch`): no
app needed, the watch is plain Python that the app's worker calls."""

from __future__ import annotations

import os
from pathlib import Path

from loomtui.tui.settings_watch import SettingsWatch
from loomtui.workspace import open_workspace

GOOD_POLICY = "version: 1\nmerge: manual\n"


def write(path: Path, text: str, *, tick: int) -> None:
    """Write and move the mtime on by `tick` seconds: two writes in one clock tick must still differ."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (1_700_000_000 + tick, 1_700_000_000 + tick))


def test_a_broken_file_keeps_the_last_good_reading_and_says_file_and_line(repo: Path) -> None:
    config, policy = repo / ".loom" / "loom.yaml", repo / ".loom" / "policy.yaml"
    write(config, "version: 1\ntheme: loom-light\n", tick=1)
    write(policy, GOOD_POLICY, tick=1)
    watch = SettingsWatch(open_workspace(repo))
    assert watch.reload_if_changed() is False and watch.problem is None
    assert watch.config is not None and watch.config.theme == "loom-light" and watch.policy is not None

    write(config, "version: 1\ncoordination:\n  dependency_hops: many\n", tick=2)
    assert watch.reload_if_changed() is True
    assert watch.problem is not None and watch.problem.startswith(".loom/loom.yaml:3")
    assert watch.config.theme == "loom-light"  # the last good one stays in use
    assert watch.reload_if_changed() is False  # nothing changed since: nothing new to say

    write(config, "version: 1\n", tick=3)
    assert watch.reload_if_changed() is True and watch.problem is None
    assert watch.config.theme != "loom-light"


def test_each_files_problem_stays_until_that_file_is_fixed(repo: Path) -> None:
    config, policy = repo / ".loom" / "loom.yaml", repo / ".loom" / "policy.yaml"
    write(config, "version: 1\n", tick=1)
    write(policy, GOOD_POLICY, tick=1)
    watch = SettingsWatch(open_workspace(repo))
    watch.reload_if_changed()
    good_policy = watch.policy

    write(config, "version: 1\ntheme: [1, 2]\n", tick=2)
    write(policy, "version: 1\nmerge: sometimes\n", tick=2)
    assert watch.reload_if_changed() is True
    assert watch.problem is not None
    config_line, policy_line = watch.problem.split("\n")
    assert config_line.startswith(".loom/loom.yaml:2") and policy_line.startswith(".loom/policy.yaml:2")
    assert watch.policy is good_policy

    write(policy, GOOD_POLICY, tick=3)  # the policy fixed, loom.yaml still broken: only its line is left
    assert watch.reload_if_changed() is True
    assert watch.problem == config_line

    write(policy, "version: 1\nmerge: sometimes\n", tick=4)  # and the other way round
    write(config, "version: 1\n", tick=4)
    assert watch.reload_if_changed() is True
    assert watch.problem == policy_line


def test_a_deleted_config_is_read_as_the_defaults(repo: Path) -> None:
    config = repo / ".loom" / "loom.yaml"
    write(config, "version: 1\ntheme: loom-light\n", tick=1)
    watch = SettingsWatch(open_workspace(repo))
    watch.reload_if_changed()
    config.unlink()
    watch.reload_if_changed()
    assert watch.problem is None and watch.config is not None and watch.config.theme != "loom-light"


def test_a_file_read_empty_as_it_is_written_is_read_again_before_it_counts(repo: Path) -> None:
    """Read between its truncation and its writing (an editor's save, `write_text`), loom.yaml was empty: the
    built-in defaults were taken as the last good config, and the broken file written next kept them."""
    config = repo / ".loom" / "loom.yaml"
    write(config, "version: 1\ntheme: loom-light\n", tick=1)
    watch = SettingsWatch(open_workspace(repo))
    watch.reload_if_changed()
    write(config, "", tick=2)  # caught half way through a save
    watch.reload_if_changed()
    assert watch.config is not None and watch.config.theme == "loom-light"
    write(config, "version: 1\ncoordination:\n  dependency_hops: many\n", tick=3)  # the save ends, broken
    assert watch.reload_if_changed() is True and watch.problem is not None
    assert watch.config.theme == "loom-light"  # the last good one is the person's, not the defaults
    write(config, "", tick=4)  # emptied on purpose: it counts once it stays so
    watch.reload_if_changed()
    assert watch.reload_if_changed() is True and watch.problem is None and watch.config.theme != "loom-light"


def test_a_changed_codeowners_is_read_again_with_the_policy(repo: Path) -> None:
    """Only loom.yaml and the policy file were watched: with a new CODEOWNERS the app judged and decided by
    the old code owners."""
    config, policy, owners = repo / ".loom" / "loom.yaml", repo / ".loom" / "policy.yaml", repo / "CODEOWNERS"
    write(config, "version: 1\n", tick=1)
    write(policy, "version: 1\ngroups: {leads: [a@x.io], seniors: [b@x.io]}\ncodeowners: CODEOWNERS\n", tick=1)
    write(owners, "* @leads\n", tick=1)
    watch = SettingsWatch(open_workspace(repo))
    watch.reload_if_changed()
    before = watch.policy
    assert before is not None and before.codeowners is not None
    assert watch.reload_if_changed() is False and watch.policy is before  # nothing changed: not read again
    write(owners, "* @seniors\n", tick=2)
    watch.reload_if_changed()
    assert watch.policy is not before and watch.policy is not None
    assert watch.policy.codeowners is not None and "seniors" in str(watch.policy.codeowners)
