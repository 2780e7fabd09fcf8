"""`audit verify`, in full: the chain, the anchors in history, and the signed decisions.

The chain check (`AuditLog.verify`) catches an edit, a deletion or a reordering
inside the log, and the store's checkpoint catches a cut the store did not see.
Someone who can write both files can rebuild a consistent pair, so on top of it:

- anchors (`loomtui.governance.anchors`): the log must hold every (seq, hash) that
  a merge commit on the main branch anchored for this clone's log;
- signatures (`loomtui.governance.signing`): every decision entry's signature must
  verify against the repository's allowed_signers; a bad one always fails, an
  unsigned one fails when the policy requires signed decisions (save one taken before
  the main branch's policy began to require them: `signatures_required_since`).

What none of this can prove (entries after the newest anchor, unsigned decisions
under a policy that does not require signatures) is listed in the notes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loomtui.audit import VerifyResult
from loomtui.config import load_config
from loomtui.errors import LoomError
from loomtui.governance.anchors import AnchorReport, anchor_report
from loomtui.governance.checkout import POLICY_FILES
from loomtui.governance.gate import policy_at
from loomtui.governance.gitfacts import git_output
from loomtui.governance.policy import Policy, configured_policy
from loomtui.governance.signing import RequiredSince, SignatureReport, check_decisions, main_checkout, signers_ref
from loomtui.workspace import Workspace


@dataclass
class AuditReport:
    chain: VerifyResult
    anchors: AnchorReport
    signatures: SignatureReport

    def problems(self) -> list[tuple[int | None, str]]:
        return [*self.anchors.problems, *self.signatures.problems]

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.problems()

    def result(self) -> VerifyResult:
        """The whole check as one VerifyResult (the chain's first, then anchors, then signatures)."""
        if not self.chain.ok:
            return self.chain
        notes = [*self.chain.notes, *self.anchors.notes, *self.signatures.notes]
        problems = self.problems()
        if problems:
            seq, text = problems[0]
            # "N entries verified before it": up to the entry named, or the whole (cut) log.
            before = min(self.chain.entries, seq - 1) if seq else self.chain.entries
            return VerifyResult(False, before, text, seq, notes)
        return VerifyResult(True, self.chain.entries, notes=notes)

    def lines(self, path: Path) -> list[str]:
        """The summary line (`OK: ...` or `BROKEN: ...`), then any further problems."""
        lines = [self.result().summary(path)]
        rest = self.problems()[1:] if self.chain.ok else self.problems()
        lines += [f"  also: {text}" for _seq, text in rest]
        return lines

    def as_dict(self, path: Path) -> dict[str, Any]:
        return {"path": str(path), **asdict(self.result()), "chain_ok": self.chain.ok,
                "log_entries": self.chain.entries,
                "anchors": self.anchors.as_dict(), "signatures": self.signatures.as_dict()}


def verify_audit(workspace: Workspace, refs: tuple[str, ...] = ()) -> AuditReport:
    """Check the chain, the anchors on the main branches (and `refs`), and every decision's signature."""
    chain = workspace.audit.verify()
    entries = list(workspace.audit.entries())
    targets = {str(s.merged_into) for s in workspace.store.list_sandboxes(include_archived=True)
               if s.merged_into}
    anchors = anchor_report(workspace.root, entries, refs, sorted(targets))
    trusted = main_checkout(workspace.root)
    policy, read_from = _policy_for_signatures(trusted)
    since = signatures_required_since(trusted, policy) if policy.decisions.require_signature else None
    signatures = check_decisions(entries, workspace.root, policy, since)
    if read_from:
        signatures.notes.append(read_from)
    return AuditReport(chain, anchors, signatures)


def _policy_for_signatures(trusted: Path) -> tuple[Policy, str]:
    """The policy the decisions' signatures are checked against, and a note when it is not the working tree's:
    an uncommitted typo in loom.yaml or the policy left `audit verify` with no verdict at all (exit 2), the
    committed policy then serves; the working tree's error is raised where that cannot be read either."""
    try:
        return configured_policy(trusted, load_config(trusted)), ""
    except LoomError as broken:
        try:
            committed = policy_at(trusted, "HEAD")
        except LoomError:
            raise broken from None
        return committed, f"signatures checked against the committed policy (HEAD): the working tree's: {broken}"


# How far back the policy's history is read for when signatures began to be required; a requirement older
# than this many policy commits is dated from the oldest read (later, so fewer decisions are excused).
REQUIREMENT_HISTORY = 50


def signatures_required_since(root: Path, policy: Policy) -> RequiredSince | None:
    """The oldest commit of the main branch's newest run of policy versions requiring signed decisions
    (policy files' commits only); None where the committed policy does not require them yet (a requirement
    in the working tree alone holds every decision to it: an entry written just now is not excused).

    Decisions taken before then were not asked to be signed: a team turning the requirement on keeps a
    verifiable log, where every earlier unsigned decision failed `audit verify` for good."""
    listed = git_output(root, "log", f"-{REQUIREMENT_HISTORY}", "--first-parent", "--format=%H %ct",
                        signers_ref(root), "--", *POLICY_FILES, *([policy.source] if policy.source else []))
    since = None
    for line in (listed or "").splitlines():
        commit, _, when = line.partition(" ")
        try:
            required = policy_at(root, commit).decisions.require_signature
        except LoomError:  # a version that did not parse asked nothing of anyone
            required = False
        if not required:
            break
        since = RequiredSince(commit, datetime.fromtimestamp(int(when), UTC))
    return since
