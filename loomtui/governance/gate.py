"""The CI gate: the policy evaluated on a branch's diff, as a report a CI job can post.

This is what makes the policy "codified in CI config, not a doc": the same rules the
TUI applies decide whether a branch may merge. It fails closed: a policy that does
not load is an error, never a pass.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loomtui.audit import AuditEntry, entry_or_none
from loomtui.errors import ConfigError, LoomError, markdown_said, plural, quoted, shown
from loomtui.gitcmd import Git
from loomtui.governance.checkout import POLICY_FILES, files_the_policy_names
from loomtui.governance.decision_notes import NOTES_REF, approvals_from_notes, target_mismatch
from loomtui.governance.escalations import approvals as approvals_given
from loomtui.governance.gitfacts import branch_head, change_facts, git_output, unnamed_files
from loomtui.governance.policy import (
    ChangeFacts,
    Evaluation,
    Policy,
    decision_met,
    evaluate,
    same_person,
)
from loomtui.governance.signing import VERIFIED, Decision, committed_signers, verify_committed
from loomtui.store import Store

EXIT_PASS, EXIT_NEEDS_APPROVAL = 0, 1


@dataclass(frozen=True)
class GateReport:
    base: str
    head: str
    facts: ChangeFacts
    evaluation: Evaluation
    approvals: tuple[str, ...] = ()
    approved: bool = False
    notes: list[str] = field(default_factory=list)
    rejected_by: tuple[str, ...] = ()
    """Who rejected the head commit itself (in loomtui, or by a verified published note)."""

    @property
    def empty(self) -> bool:
        """The head adds no change to its base: there is nothing to judge."""
        return not self.facts.paths

    @property
    def passed(self) -> bool:
        return self.empty or (not self.rejected_by and (self.evaluation.outcome == "auto_approve" or (
            self.evaluation.outcome == "require" and self.approved)))

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_NEEDS_APPROVAL

    @property
    def verdict(self) -> str:
        if self.empty:
            return "PASS"
        if self.evaluation.outcome == "block":
            return "BLOCKED"
        if self.rejected_by:
            return "REJECTED"
        return "PASS" if self.passed else "NEEDS APPROVAL"

    def as_dict(self) -> dict[str, Any]:
        judged = not self.empty  # with no change there is no outcome: nothing was judged
        return {
            "verdict": self.verdict, "exit_code": self.exit_code, "base": self.base, "head": self.head,
            "outcome": self.evaluation.outcome if judged else "none", "risk": self.evaluation.risk,
            "rules": [{"name": a.name, "decision": a.decision, "risk": a.risk, "why": a.why}
                      for a in self.evaluation.applied] if judged else [],
            "requirements": [r.describe() for r in self.evaluation.requirements] if judged else [],
            "approvals": list(self.approvals), "rejected_by": list(self.rejected_by),
            "paths": list(self.facts.paths),
            "regions": list(self.facts.regions), "signature_changed": list(self.facts.signature_changed),
            "lines_changed": self.facts.lines_changed, "gates": dict(self.facts.gates),
            "explanation": self.evaluation.explanation() if judged else [], "notes": self.notes,
        }

    def text(self) -> str:
        lines = [f"loomtui gate: {self.verdict} ({self.base}..{self.head[:12]}, "
                 f"{self._size(', ')}, risk {self.evaluation.risk})"]
        lines += [f"  {line}" for line in self.evaluation.explanation()] if not self.empty else []
        lines += [f"  approved by: {', '.join(self.approvals)}"] if self.approvals else []
        lines += [f"  rejected by: {', '.join(self.rejected_by)}"] if self.rejected_by else []
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def _size(self, between: str) -> str:
        return f"{plural(len(self.facts.paths), 'file')}{between}{plural(self.facts.lines_changed, 'line')}"

    def markdown(self) -> str:
        icon = {"PASS": "✅", "NEEDS APPROVAL": "⏳", "BLOCKED": "⛔", "REJECTED": "⛔"}[self.verdict]
        out = [f"### {icon} loomtui policy gate: {self.verdict}", ""]
        if not self.empty:  # with no change nothing was judged: no rules to show
            out += [f"`{self.base}..{self.head[:12]}` · {self._size(' · ')} · risk **{self.evaluation.risk}**", "",
                    "| rule | decision | risk | why |", "| --- | --- | --- | --- |"]
            out += [f"| {markdown_said(a.name)} | {a.decision} | {a.risk or '–'} | {markdown_said(a.why)} |"
                    for a in self.evaluation.applied]
            if self.evaluation.outcome == "block":  # the rules' approvals would not let it through
                out += ["", "**Blocked:** no approval lets it through, only an override with a reason"]
            elif self.evaluation.requirements:
                needs = "; ".join(r.describe() for r in self.evaluation.requirements)
                out += ["", "**Needs:** " + markdown_said(needs)]
        if self.approvals:
            out += ["", "**Approved by:** " + markdown_said(", ".join(self.approvals))]
        if self.rejected_by:
            out += ["", "**Rejected by:** " + markdown_said(", ".join(self.rejected_by))]
        out += [f"\n> {markdown_said(note)}" for note in self.notes]
        return "\n".join(out)


def policy_at(root: Path, rev: str) -> Policy:
    """The policy as it stands at `rev` (loom.yaml, the policy file and CODEOWNERS from there).

    A branch is judged by the policy of what it merges into, never by its own: a
    change that loosens the policy must not approve itself.
    """
    from loomtui.config import load_config
    from loomtui.governance.policy import configured_policy

    names = (git_output(root, "ls-tree", "-r", "--name-only", rev, "--", *POLICY_FILES) or "").splitlines()
    with tempfile.TemporaryDirectory(prefix="loomtui-policy-") as scratch:
        snapshot = Path(scratch)
        _copy_at(root, rev, snapshot, names)
        config = load_config(snapshot)
        # The files loom.yaml and the policy name where they are, wherever that is (a policy in `governance/`,
        # CODEOWNERS in `.gitlab/`, allowed_signers in `.github/`: the gate failed for a policy `policy validate`
        # passed, "file not found").
        _copy_at(root, rev, snapshot, [config.policy])
        _copy_at(root, rev, snapshot, files_the_policy_names(snapshot / config.policy))
        return configured_policy(snapshot, config)


def _copy_at(root: Path, rev: str, snapshot: Path, names: Sequence[str]) -> None:
    """Each of `names` as `rev` has it, written under `snapshot` (one outside it, or none at `rev`, is not)."""
    for name in names:
        target = (snapshot / name).resolve()
        if not name or not target.is_relative_to(snapshot.resolve()) or target.exists():
            continue
        done = Git(root).raw("show", f"{rev}:{name}")
        if done.status == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(done.out)


class NoBaseBranch(LoomError):
    """No target branch could be found to judge a change against."""


def default_base(root: Path) -> str:
    """The target branch: $GITHUB_BASE_REF in a pull request (as fetched from origin, else local),
    else main, else master, else the branch origin/HEAD names, else git's init.defaultBranch (as
    `loomtui report` finds it; never the branch checked out, which is the change being judged).

    A $GITHUB_BASE_REF that names no branch here is an error, never a fall back to main: the
    change would be judged against another branch's policy and diff, which can pass what its
    real target would hold.
    """
    if branch_head(root, "HEAD") is None:
        raise NoBaseBranch("the repository has no commits yet: the gate judges a branch's commits against its "
                           "base's")
    pull_request_base = os.environ.get("GITHUB_BASE_REF", "").strip()
    if pull_request_base:
        for candidate in (f"origin/{pull_request_base}", pull_request_base):
            if branch_head(root, candidate):
                return candidate
        raise NoBaseBranch(f"GITHUB_BASE_REF={pull_request_base} names no branch here "
                           f"(neither origin/{pull_request_base} nor {pull_request_base}; fetch it)")
    origin = git_output(root, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD") or ""
    default = git_output(root, "config", "--get", "init.defaultBranch") or ""
    for candidate in ("origin/main", "main", "origin/master", "master", origin, default):
        if candidate and branch_head(root, candidate):
            return candidate
    raise NoBaseBranch("no base branch found (none of origin/main, main, origin/master, master, origin's HEAD or "
                       "init.defaultBranch): name it with --base BRANCH")


def run_gate(root: Path, policy: Policy | None = None, *, base: str | None = None, head: str = "HEAD",
             store: Store | None = None, without_store: str = "no state store here") -> GateReport:
    """Evaluate the policy (by default the base's) on base...head, with gate results and approvals
    from the store if any (`without_store`: why there is none, for the report's note)."""
    base = base or default_base(root)
    head_sha = branch_head(root, head)
    if head_sha is None:
        raise LoomError(f"head {quoted(head)} is not a commit")
    base_sha = branch_head(root, base)
    if base_sha is None:
        raise LoomError(f"base {quoted(base)} is not a commit")
    notes: list[str] = []
    branch_tip = _test_merge_of(root, head_sha, base_sha)
    if branch_tip is not None:
        notes.append(f"{head} is a test merge of {branch_tip[:12]} into {base} (a pull request's checkout in CI): "
                     f"judged {branch_tip[:12]}, the branch's own head, which its approvals name")
        head_sha = branch_tip
    meeting = (git_output(root, "merge-base", "--all", base, head_sha) or "").split()
    if len(meeting) > 1:  # the merge is from all of them: one, the branch's pick, hid a revert (fails closed)
        raise LoomError(f"{quoted(head)} and {quoted(base)} meet at {len(meeting)} commits "
                        f"({', '.join(m[:12] for m in meeting[:4])}): what merging it brings in cannot be "
                        "measured from one; merge the base into it once to make one meeting point")
    if not meeting and git_output(root, "rev-parse", "--is-shallow-repository") == "true":
        # Diffed against the base's tip, the base's own later changes read as the branch's.
        raise LoomError(f"{quoted(head)} and {quoted(base)} have no commit in common in this shallow clone: "
                        "fetch their history (`git fetch --unshallow`; actions/checkout: `fetch-depth: 0`)")
    merge_base = meeting[0] if meeting else base
    _refuse_unnamed_files(root, merge_base, head_sha, head)
    if policy is None:
        # The tip's, not the merge base's: a branch forked from an old commit chose its own (looser) policy.
        try:
            policy = policy_at(root, base_sha)
        except LoomError as exc:  # its lines are the base's, not the checked-out file's (in CI, the branch's)
            # The file it is about (it named .loom/policy.yaml for a loom.yaml's or a CODEOWNERS' error).
            about = exc.path if isinstance(exc, ConfigError) else ".loom/policy.yaml"
            raise LoomError(f"{exc} (the policy as {base} has it: `git show {base_sha[:12]}:{about}`)",
                            exit_code=exc.exit_code) from None
    gates: dict[str, str] = {}
    advisory: set[str] = set()  # `blocking: false` gates: shown, and matched only by name
    runtime = None
    approvals: tuple[str, ...] = ()
    rejected_by: tuple[str, ...] = ()
    sandbox = _sandbox_of(store, root, head, head_sha) if store is not None else None
    author = None  # the head commit's author, unless the store knows whose task it is
    if sandbox is not None:
        runtime = sandbox.runtime
        # Whose task it is, as its review judged it: the commits' author is the agent's git identity,
        # and the task's author's own approval counted here while the review refused it.
        author = sandbox.created_by or None
        for run in store.gate_runs(sandbox.id):  # type: ignore[union-attr]
            if run.commit_sha == head_sha:  # results for another commit say nothing about this one
                gates[run.gate] = run.status
                if run.advisory:
                    advisory.add(run.gate)
        approvals, rejected_by = _decisions_for(store, sandbox.id, head_sha,  # type: ignore[arg-type]
                                                root=root, policy=policy, base_sha=base_sha, into=base,
                                                notes=notes)
    elif store is None:
        notes.append(f"{without_store}: gate results recorded in loomtui are not visible; approvals are "
                     f"read from {NOTES_REF}")
    facts = change_facts(root, merge_base, head_sha, gates=gates, runtime=runtime, author=author, onto=base_sha,
                         advisory_gates=advisory)
    if sandbox is not None and store is not None:  # gate 2's score too, as its review judged it (PASS of a block)
        from loomtui.governance.explain import with_eval_facts

        facts = with_eval_facts(facts, store, sandbox.id, head_sha)
    evaluation = evaluate(policy, facts)
    if sandbox is None and policy.separation_of_duties and evaluation.outcome == "require":
        notes.append(f"separation of duties: the author is {facts.author or 'unknown'} as the head commit names "
                     "it, and a commit can name anyone: a signed approval proves who decided, not who wrote it")
    if evaluation.outcome == "require" and facts.paths:
        published = approvals_from_notes(root, policy, base_sha, head_sha, base)  # signers as the tip has them
        approvals = tuple(dict.fromkeys((*approvals, *published.users)))
        rejected_by = tuple(dict.fromkeys((*rejected_by, *published.rejected_by)))
        notes.extend(published.notes)
    if any(path.startswith(".loom/") or path.endswith("CODEOWNERS") for path in facts.paths):
        notes.append("this change edits the policy or code owners; it is judged by the base's policy")
    met, how_met = decision_met(policy, evaluation, approvals, facts.author)
    approved = bool(approvals) and met
    if approvals and not met and evaluation.outcome == "require":  # listed above: why they are not enough
        notes += [f"approvals do not meet {line.removeprefix('unmet: ')}" for line in how_met
                  if line.startswith("unmet: ")]
    if rejected_by and facts.paths:
        notes.insert(0, f"{', '.join(rejected_by)} rejected {head_sha[:12]}: no approval lets this commit through")
    if sandbox is not None and facts.paths and evaluation.outcome != "auto_approve" and not approved:
        notes += _overrides_unread(store, sandbox.id, head_sha)  # type: ignore[arg-type]
    if not facts.paths:
        notes.insert(0, f"{head} adds no change to {base}: nothing to judge")
    return GateReport(base, head_sha, facts, evaluation, approvals, approved, notes, rejected_by)


def _test_merge_of(root: Path, head_sha: str, base_sha: str) -> str | None:
    """The branch's head when `head_sha` is a test merge of it into the base, as CI checks out a pull request
    (GitHub's `refs/pull/N/merge`): two parents, the first the base's tip, and the very tree a clean merge of
    the two makes, nothing added to it by hand. None for any other commit. Its approvals are on the branch's
    head: the merge read NEEDS APPROVAL for good, its note calling that head "an earlier commit"."""
    parents = (git_output(root, "rev-list", "--parents", "-n", "1", head_sha) or "").split()[1:]
    if len(parents) != 2 or parents[0] != base_sha:
        return None
    merged = Git(root).run("merge-tree", "--write-tree", base_sha, parents[1])
    tree = merged.out.split()[0] if merged.status == 0 and merged.out.strip() else None
    return parents[1] if tree is not None and tree == git_output(root, "rev-parse", f"{head_sha}^{{tree}}") else None


def _remotes(root: Path) -> set[str]:
    return set((git_output(root, "remote") or "").split())


def _refuse_unnamed_files(root: Path, base: str, head_sha: str, head: str) -> None:
    """A change with files whose names loomtui cannot read (`globs.name_problem`) fails closed, naming them, as
    the review refuses to judge one: a line break in a folder's name got past the `conftest.py` rules."""
    unnamed = unnamed_files(root, base, head_sha)
    if unnamed:
        raise LoomError(f"{quoted(head)} changes files whose names loomtui cannot read "
                        f"({', '.join(shown(path) for path in unnamed[:5])}{' ...' if len(unnamed) > 5 else ''}): "
                        "no rule can be matched to them; rename them")


def _sandbox_of(store: Store, root: Path, head: str, head_sha: str) -> Any:
    """The sandbox whose change `head` is, if any: named as its branch (`loom/<id>`, `origin/loom/<id>`), else
    the one sandbox whose branch here is at that very commit, or that was approved at it (CI checks out `HEAD`
    or a commit id: the same change read NEEDS APPROVAL by its id and PASS by its branch's name)."""
    name = head.removeprefix("refs/").removeprefix("heads/")
    if name.startswith("remotes/") or (name.count("/") == 2 and name.split("/")[0] in _remotes(root)):
        name = name.removeprefix("remotes/").split("/", 1)[-1]  # `origin/loom/ID`: its remote's copy
    if name.startswith("loom/") and name.count("/") == 1:  # not `feature/loom/ID`, another branch
        found = store.get_sandbox(name.removeprefix("loom/"))
        if found is not None:
            return found
    at = {ref.removeprefix("refs/heads/loom/") for ref in (git_output(
        root, "for-each-ref", "--format=%(refname)", "--points-at", head_sha, "refs/heads/loom/") or "").split()}
    sandboxes = [record for record in store.list_sandboxes(include_archived=True)
                 if (record.id in at and record.base_sha != head_sha) or record.approved_commit == head_sha]
    return sandboxes[0] if len(sandboxes) == 1 else None


def _overrides_unread(store: Store, sandbox_id: str, head_sha: str) -> list[str]:
    """A note for each override of this commit's escalations in the store: the gate judges by the policy and
    approvals alone, and a block overridden in the app still read BLOCKED here, with nothing said why."""
    notes = []
    for escalation in store.sandbox_escalations(sandbox_id, ("post-gate",)):
        if escalation.status == "overridden" and escalation.data.get("commit") == head_sha:
            by: dict[str, Any] = next((h for h in reversed(escalation.data.get("history", []))
                                       if h.get("event") == "override"), {})
            notes.append(f"escalation #{escalation.id} was overridden in loomtui by {by.get('by', '?')} "
                         f"({by.get('reason', '')}); this gate does not take overrides: the change merges "
                         "through loomtui, which does")
    return notes


def _decisions_for(store: Store, sandbox_id: str, head_sha: str, *, root: Path, policy: Policy, base_sha: str,
                   into: str, notes: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Who approved, and who rejected, this very commit in the sandbox's reviews. An approval counts only
    with its decision in the audit log, signed where the policy asks (checked against the base's
    allowed_signers, as a published note is): one written into the store's row by hand (anyone with the
    team store's credentials) passed the gate, though the merge refused it. The log's own integrity is
    `audit verify`'s: a forger who writes its entries too is caught there, or by a required signature."""
    users: list[str] = []
    rejected_by: list[str] = []
    decided = _audited_approvals(store)
    git = Git(root)
    at_base = committed_signers(root, policy, base_sha) if policy.decisions.require_signature else None
    for escalation in store.sandbox_escalations(sandbox_id, ("post-gate",)):
        for user in [a.user for a in approvals_given(escalation, head_sha)]:
            entry = next((e for e in decided.get(str(escalation.id), ()) if same_person(e.actor, user)
                          and e.details.get("commit") == head_sha), None)
            if entry is None:
                notes.append(f"the approval by {user} of escalation #{escalation.id} in the store has no decision "
                             "in the audit log: it does not count (`loomtui audit verify`)")
                continue
            decision = Decision.from_entry(entry)
            mismatch = target_mismatch(git, into, decision)
            if mismatch:  # judged on the diff into another branch
                notes.append(mismatch)
                continue
            if policy.decisions.require_signature:
                signature = entry.details.get("signature")
                verdict = verify_committed(decision, signature if isinstance(signature, str) else None, root,
                                           policy, at_base)
                if verdict.status != VERIFIED:
                    notes.append(f"the approval by {user} of escalation #{escalation.id} does not count: "
                                 f"{verdict.detail} (checked against {policy.decisions.allowed_signers} at the base)")
                    continue
            users.append(user)
        rejected_by += [str(h["by"]) for h in escalation.data.get("history", [])
                        if h.get("event") == "reject" and h.get("commit") == head_sha]
    return tuple(dict.fromkeys(users)), tuple(dict.fromkeys(rejected_by))


def _audited_approvals(store: Store) -> dict[str, list[AuditEntry]]:
    """The audit log's approvals (in the store), by escalation id. Only the lines naming one are parsed: the
    log holds every edit check of every agent."""
    found: dict[str, list[AuditEntry]] = {}
    for _seq, _hash, line in store.audit_entries_after(0):
        if '"escalation.approve"' in line and (entry := entry_or_none(line)) is not None \
                and entry.action == "escalation.approve":
            found.setdefault(entry.subject, []).append(entry)
    return found
