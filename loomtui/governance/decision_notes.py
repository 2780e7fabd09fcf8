"""Decisions published into the repository as git notes, so a CI gate in a fresh clone sees them.

Each decision a lead takes on a commit is appended, as one JSON line, to that commit's
note under `refs/notes/loom`, with its ssh signature; the note's commit is made in the
approver's name (git's author and committer), so `git log refs/notes/loom` shows who
published what. Push the ref with the branch (`git push origin refs/notes/loom`); a
CI job fetches it (`git fetch origin refs/notes/loom:refs/notes/loom`) before
`loomtui gate`.

Only decisions on a change's review (`post-gate` escalations) are published. Anyone
who can push can write a note, so the gate counts an approval from a note only when
its signature (over the escalation's kind too) verifies for its approver against the
allowed_signers file of the *base* commit (the branch under review cannot add its
author's key), only for a review, and only for the commit it was made on: a note on
an earlier commit of the branch, or one naming another commit than the one it is
attached to, is ignored and the gate says so.

Notes refs written on two machines diverge; merge them as JSON lines merge, with
`git notes --ref loom merge -s cat_sort_uniq <the other ref>`.
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass
from pathlib import Path

from loomtui.gitcmd import Git
from loomtui.governance.policy import Policy
from loomtui.governance.signing import VERIFIED, Decision, committed_signers, verify_committed
from loomtui.json_text import parse_json

NOTES_REF = "refs/notes/loom"
FETCH_HINT = f"git fetch origin {NOTES_REF}:{NOTES_REF}"


def publish(root: Path, state_dir: Path, decision: Decision, signature: str | None) -> str:
    """Append a decision to the note of the commit it binds to; '' when done, else why not
    (a decision about no commit, or git refusing: the decision itself stands either way)."""
    if not decision.commit or Git(root).run("cat-file", "-e", f"{decision.commit}^{{commit}}").status:
        return f"no commit {decision.commit[:12] or '(none)'} here to attach the decision to"
    line = json.dumps({"escalation": decision.escalation, "kind": decision.kind, "decision": decision.decision,
                       "actor": decision.actor, "commit": decision.commit, "reason": decision.reason,
                       "at": decision.at, "signature": signature or "",
                       **({"target": decision.target} if decision.target else {})}, sort_keys=True)
    identity = {"GIT_AUTHOR_NAME": decision.actor, "GIT_AUTHOR_EMAIL": decision.actor,
                "GIT_COMMITTER_NAME": decision.actor, "GIT_COMMITTER_EMAIL": decision.actor}
    state_dir.mkdir(parents=True, exist_ok=True)
    # Two leads deciding at once would race on the notes ref; they queue here instead.
    with open(state_dir / "notes.lock", "a+b") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        done = Git(root).run("notes", "--ref", NOTES_REF, "append", "-m", line, decision.commit, env=identity)
    return "" if done.status == 0 else f"git notes failed: {done.err.strip().splitlines()[-1:] or done.status}"


@dataclass(frozen=True)
class NoteApprovals:
    """What the notes say for a head commit: the approvers that count, and why others do not."""

    users: tuple[str, ...]
    notes: tuple[str, ...]
    rejected_by: tuple[str, ...] = ()
    """Who rejected this very commit, by a verified note: no approval lets it through then."""


def _decisions(root: Path, commit: str) -> list[dict[str, object]]:
    done = Git(root).run("notes", "--ref", NOTES_REF, "show", commit)
    if done.status != 0:
        return []
    found = []
    for line in done.out.splitlines():
        try:
            value = parse_json(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def approvals_from_notes(root: Path, policy: Policy, base: str, head: str, into: str = "") -> NoteApprovals:
    """The approvers of `head` that its notes prove, checked against `base`'s allowed_signers; an approval
    signed for a merge into another branch than `into` (the base as given: `origin/main` is `main`) does
    not count."""
    git = Git(root)
    if git.run("rev-parse", "--verify", "--quiet", NOTES_REF).status != 0:
        return NoteApprovals((), (f"no decisions published in {NOTES_REF} here (in a fresh clone: {FETCH_HINT})",))
    users: list[str] = []
    rejected_by: list[str] = []
    notes: list[str] = []
    signers = policy.decisions.allowed_signers
    at_base = committed_signers(root, policy, base)
    for entry in _decisions(root, head):
        decision = _decision(entry)
        if decision is None or decision.decision not in ("approve", "reject"):
            continue
        named = "approval" if decision.decision == "approve" else "rejection"
        if decision.kind != "post-gate":
            notes.append(f"an {named} by {decision.actor} of a {decision.kind or 'request'} (not of the "
                         f"change's review) is not an {named} of the change: ignored")
            continue
        if decision.commit != head:
            notes.append(f"a note on {head[:12]} {decision.decision}s {decision.commit[:12]} instead: ignored")
            continue
        verdict = verify_committed(decision, str(entry.get("signature") or "") or None, root, policy, at_base)
        if verdict.status != VERIFIED:
            notes.append(f"the {named} by {decision.actor} in {NOTES_REF} does not count: {verdict.detail} "
                         f"(checked against {signers} at the base)")
            continue
        mismatch = target_mismatch(git, into, decision) if decision.decision == "approve" else None
        if mismatch:
            notes.append(mismatch)
            continue
        (users if decision.decision == "approve" else rejected_by).append(decision.actor)
    earlier = git.run("rev-list", f"{base}..{head}")
    for commit in earlier.out.split()[1:] if earlier.status == 0 else []:
        for entry in _decisions(root, commit):
            if entry.get("decision") == "approve":
                notes.append(f"an approval by {entry.get('actor')} is for {commit[:12]}, an earlier commit of "
                             f"this branch; it does not count for {head[:12]}")
    return NoteApprovals(tuple(dict.fromkeys(users)), tuple(notes), tuple(dict.fromkeys(rejected_by)))


def target_mismatch(git: Git, into: str, decision: Decision) -> str | None:
    """Why an approval signed for a merge into one branch does not count for a merge into `into` (the base
    as given), or None when it does (or names no branch). A base that names no branch (a commit, a tag:
    CI often passes the base's sha) counts only as the tip of the branch approved into; it was not
    compared at all, and an approval for another branch passed the gate."""
    if not decision.target or not into:
        return None
    branch = _branch_name(git, into)
    if branch == decision.target:
        return None
    said = f"the approval by {decision.actor} was for a merge into {decision.target}"
    if branch:
        return f"{said}, not into {branch}: it does not count here (the diff it saw was another)"
    base = git.run("rev-parse", "--verify", "--quiet", f"{into}^{{commit}}").out.strip()
    tips = git.run("for-each-ref", "--points-at", base, "--format=%(refname)", "refs/heads", "refs/remotes").out \
        if base else ""
    if any(_branch_name(git, ref) == decision.target for ref in tips.split()):
        return None
    return (f"{said}, and the base {into} is not the tip of {decision.target}: it does not count here (name the "
            "base by its branch, e.g. --base origin/" + decision.target + ")")


def _branch_name(git: Git, ref: str) -> str:
    """The branch `ref` names: `main` for main, refs/heads/main and origin/main alike ('' for a commit)."""
    full = git.run("rev-parse", "--symbolic-full-name", ref).out.strip()
    if full.startswith("refs/heads/"):
        return full.removeprefix("refs/heads/")
    if full.startswith("refs/remotes/"):
        return full.removeprefix("refs/remotes/").partition("/")[2]
    return ""


def _decision(entry: dict[str, object]) -> Decision | None:
    try:
        return Decision(escalation=str(entry["escalation"]), decision=str(entry["decision"]),
                        actor=str(entry["actor"]), commit=str(entry["commit"]), reason=str(entry.get("reason", "")),
                        at=str(entry["at"]), kind=str(entry.get("kind", "")), target=str(entry.get("target", "")))
    except KeyError:
        return None
