"""Signed decisions: a person's approve / reject / override, signed with their ssh key.

A decision is signed with git's ssh signing (`ssh-keygen -Y sign -n loomtui-decision`)
over a canonical text of what was decided: the escalation, the decision, who, the
commit it binds to, the reason and when. The key is `LOOM_SIGNING_KEY`, else git
config `loom.signingkey`, else git's `user.signingkey` when `gpg.format` is `ssh`
(a private key file, a public key whose private half is in ssh-agent, or a
`key::ssh-ed25519 ...` literal). The signature is kept in the decision's audit entry.

Who may sign for whom is an ssh `allowed_signers` file kept in the repository
(`.loom/allowed_signers`, or `decisions.allowed_signers` in the policy), as committed on
the main branch (`signers_ref`): never a sandbox's worktree or branch, nor a key appended
and not committed (the team's machines and the CI gate could not see it). The version a
decision was checked against is kept in its audit entry (`allowed_signers_blob`), so
`audit verify` still reads it after a key is rotated. With `decisions:
{require_signature: true}` an unsigned or badly signed decision is refused when it
is taken, and `audit verify` fails on any decision entry that does not verify.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from loomtui.audit import AuditEntry
from loomtui.errors import LoomError, listed, plural
from loomtui.gitcmd import Git
from loomtui.governance.anchors import DEFAULT_BRANCHES
from loomtui.governance.policy import Policy
from loomtui.identity import signing_key

NAMESPACE: Final = "loomtui-decision"
DECISION_ACTIONS: Final = {"escalation.approve": "approve", "escalation.reject": "reject",
                           "escalation.override": "override"}

VERIFIED: Final = "verified"  # signed by a key allowed_signers lists for the actor
UNSIGNED: Final = "unsigned"  # no signature
BAD: Final = "bad"  # a signature that does not verify for the actor (forged, edited, someone else's key)
UNLISTED: Final = "unlisted"  # signed, but allowed_signers names no key for the actor
NO_SIGNERS: Final = "no-allowed-signers"  # signed, but the repository has no allowed_signers file
_TIMEOUT: Final = 30.0
_BLOB_ID: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class SigningError(LoomError):
    """ssh-keygen could not sign (no key, a locked key, no ssh-keygen)."""

    exit_code = 1


@dataclass(frozen=True)
class Decision:
    """What a person decided; its canonical text is what gets signed."""

    escalation: str
    decision: str
    actor: str
    commit: str
    reason: str
    at: str
    kind: str = ""
    """The escalation's kind (post-gate, permission-request, ...), signed with the rest, so an
    approval of one kind of request cannot be passed off as another ('' in decisions signed before)."""
    target: str = ""
    """The branch the change was to merge into, signed with the rest: an approval of a commit reviewed
    against a small diff into `feat` counted for `gate --base main` ('' in decisions signed before)."""

    def canonical(self) -> bytes:
        fields = asdict(self)
        if not self.target:
            del fields["target"]  # the text decisions were signed over before targets were: still verifies
        if not self.kind:
            del fields["kind"]
        version = "v3" if self.target else "v2" if self.kind else "v1"
        lines = [f"loomtui-decision {version}"]
        lines += [f"{name}: {json.dumps(value)}" for name, value in fields.items()]
        return ("\n".join(lines) + "\n").encode()

    @classmethod
    def from_entry(cls, entry: AuditEntry) -> Decision:
        details = entry.details
        return cls(escalation=entry.subject, decision=DECISION_ACTIONS.get(entry.action, entry.action),
                   actor=entry.actor, commit=str(details.get("commit", "")),
                   reason=str(details.get("reason", "")), at=str(details.get("decided_at", "")),
                   kind=str(details.get("kind", "")), target=str(details.get("target", "")))


@dataclass(frozen=True)
class Verdict:
    status: str
    detail: str
    signature: str | None = None
    signers: str | None = None
    """The allowed_signers blob it was checked against (None: no committed file)."""


# -- the signing key -----------------------------------------------------------------------


def _ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise SigningError("ssh-keygen is not installed (apt-get install openssh-client)")
    return found


def sign(decision: Decision, key: str) -> str:
    """The armored ssh signature of the decision's canonical text."""
    with tempfile.TemporaryDirectory(prefix="loomtui-sign-") as scratch:
        if key.startswith("key::"):
            key_file = Path(scratch) / "key.pub"  # a public key literal: the private half is in ssh-agent
            key_file.write_text(key[len("key::"):].strip() + "\n")
        else:
            key_file = Path(os.path.expanduser(key))
            if not key_file.exists():
                raise SigningError(f"the signing key {key} does not exist")
            # ssh-keygen said "Couldn't load public key ...: No such file or directory" of both.
            if key_file.is_dir():
                raise SigningError(f"the signing key {key} is a folder, not a key file")
            if key_file.is_file() and key_file.stat().st_size == 0:
                raise SigningError(f"the signing key {key} is an empty file, not a key")
        try:
            # Never a passphrase prompt: on the app's terminal ssh-keygen took the next keys pressed as the
            # passphrase. Its askpass is forced to fail, and it runs with no terminal of its own.
            done = subprocess.run([_ssh_keygen(), "-Y", "sign", "-f", str(key_file), "-n", NAMESPACE],
                                  input=decision.canonical(), capture_output=True, timeout=_TIMEOUT,
                                  env={**os.environ, "SSH_ASKPASS": "false", "SSH_ASKPASS_REQUIRE": "force"},
                                  start_new_session=True)
        except subprocess.TimeoutExpired:
            raise SigningError("ssh-keygen timed out signing") from None
    out = done.stdout.decode(errors="replace")
    if done.returncode != 0 or "BEGIN SSH SIGNATURE" not in out:
        error = done.stderr.decode(errors="replace").strip().splitlines()
        if error and "passphrase" in error[-1]:
            raise SigningError(f"the signing key {key} is locked with a passphrase: load it into ssh-agent "
                               f"(ssh-add {key}) and decide again")
        raise SigningError(f"ssh-keygen could not sign with {key}: {error[-1] if error else 'no signature'}")
    return out


# -- allowed signers -------------------------------------------------------------------------


def main_checkout(root: Path) -> Path:
    """The repository's main working tree, even when `root` is a sandbox's worktree."""
    try:
        done = Git(root).run("rev-parse", "--path-format=absolute", "--git-common-dir", timeout=10)
    except LoomError:
        return root
    common = Path(done.out.strip()) if done.status == 0 and done.out.strip() else None
    return common.parent if common is not None and common.name == ".git" else root


def signers_ref(root: Path) -> str:
    """Where the team's allowed_signers is read: the main branch (main, else master), never whatever the
    main checkout has checked out (a lead trying an agent's branch read the agent's own key file as the
    team's); HEAD only where there is no main branch."""
    git = Git(main_checkout(root))
    return next((f"refs/heads/{name}" for name in DEFAULT_BRANCHES
                 if git.run("rev-parse", "--verify", "--quiet", f"refs/heads/{name}^{{commit}}").status == 0), "HEAD")


def committed_signers(root: Path, policy: Policy, commit: str | None = None) -> str | None:
    """The blob of the policy's allowed_signers as committed at `commit` (default: the main branch,
    `signers_ref`); None when it is not committed there."""
    done = Git(main_checkout(root)).run("rev-parse", "--verify", "--quiet",
                                        f"{commit or signers_ref(root)}:{policy.decisions.allowed_signers}")
    return done.out.strip() if done.status == 0 and done.out.strip() else None


def committed_versions(root: Path, policy: Policy) -> dict[str, tuple[int, int]]:
    """Every blob the policy's allowed_signers has been in the history of the main branch (`signers_ref`),
    with how recent it is, newest first: (its most recent time, its earliest), 0 being today's (a file
    that returned to earlier bytes holds that version twice)."""
    # `-m`: a merge's own version of the file (a conflict resolved in it) too, which `--raw` leaves out of a merge.
    done = Git(main_checkout(root)).run("log", "--format=", "--raw", "-m", "--no-abbrev", "--no-renames",
                                        signers_ref(root), "--", policy.decisions.allowed_signers)
    newest_first = [line.split("\t")[0].split()[3] for line in done.out.splitlines() if line.startswith(":")]
    ranks: dict[str, tuple[int, int]] = {}
    for position, blob in enumerate(newest_first):
        if blob.strip("0"):
            ranks[blob] = (ranks[blob][0] if blob in ranks else position, position)
    return ranks


def verify_committed(decision: Decision, signature: str | None, root: Path, policy: Policy,
                     blob: str | None) -> Verdict:
    """`verify` against the allowed_signers blob `blob` (see `committed_signers`; None: none committed)."""
    named = policy.decisions.allowed_signers
    if not signature:
        return Verdict(UNSIGNED, "unsigned")
    if blob is None:
        missing = "is not committed" if (main_checkout(root) / named).is_file() else "is not in the repository"
        return Verdict(NO_SIGNERS, f"signed, but {named} {missing} to check it against", signature)
    data = Git(main_checkout(root)).raw("cat-file", "blob", blob)
    if data.status != 0:
        return Verdict(NO_SIGNERS, f"signed, but the {named} it was checked against ({blob[:12]}) is not in this "
                                   "repository", signature, blob)
    with tempfile.TemporaryDirectory(prefix="loomtui-signers-") as scratch:
        allowed = Path(scratch) / Path(named).name
        allowed.write_bytes(data.out)
        return replace(verify(decision, signature, allowed), signers=blob)


def listed_principals(allowed: Path) -> list[str]:
    """The principal patterns of an allowed_signers file (first field of each line)."""
    try:
        text = allowed.read_text(errors="replace")
    except OSError:
        return []
    principals: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            principals += [p for p in line.split(None, 1)[0].split(",") if p]
    return principals


def is_listed(allowed: Path, actor: str) -> bool:
    wanted = actor.casefold()
    return any(not p.startswith("!") and fnmatch.fnmatchcase(wanted, p.casefold())
               for p in listed_principals(allowed))


def _keygen_verify(args: list[str], data: bytes, signature: str) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory(prefix="loomtui-verify-") as scratch:
        sig_file = Path(scratch) / "decision.sig"
        sig_file.write_text(signature)
        return subprocess.run([_ssh_keygen(), "-Y", *args, "-s", str(sig_file)], input=data,
                              capture_output=True, timeout=_TIMEOUT)


def verify(decision: Decision, signature: str | None, allowed: Path) -> Verdict:
    """Whether `signature` is the actor's signature of this decision, per allowed_signers."""
    if not signature:
        return Verdict(UNSIGNED, "unsigned")
    if not allowed.is_file():
        return Verdict(NO_SIGNERS, f"signed, but there is no {allowed.name} to check it against", signature)
    if not is_listed(allowed, decision.actor):
        return Verdict(UNLISTED, f"signed, but {allowed.name} lists no key for {decision.actor}", signature)
    try:
        done = _keygen_verify(["verify", "-f", str(allowed), "-I", decision.actor, "-n", NAMESPACE],
                              decision.canonical(), signature)
    except SigningError as exc:
        return Verdict(BAD, str(exc), signature)
    except subprocess.TimeoutExpired:
        return Verdict(BAD, "ssh-keygen timed out verifying", signature)
    if done.returncode == 0:
        return Verdict(VERIFIED, f"signed by {decision.actor}", signature)
    return Verdict(BAD, _why_bad(decision, signature, allowed), signature)


def _why_bad(decision: Decision, signature: str, allowed: Path) -> str:
    """Say whose key made a signature that does not verify for the actor, if anyone's."""
    try:
        found = _keygen_verify(["find-principals", "-f", str(allowed), "-n", NAMESPACE], b"", signature)
    except (SigningError, subprocess.TimeoutExpired):
        found = None
    owners = found.stdout.decode(errors="replace").split() if found and found.returncode == 0 else []
    if owners and decision.actor not in owners:
        return f"signed with the key of {', '.join(owners)}, not of {decision.actor}"
    if owners:
        return f"the signature does not match the decision (edited after {decision.actor} signed it)"
    return f"not signed by any key {allowed.name} lists for {decision.actor}"


# -- at decision time ------------------------------------------------------------------------


def sign_decision(root: Path, policy: Policy, decision: Decision) -> Verdict:
    """Sign a decision now with the user's key and check it against allowed_signers.

    With no key configured the verdict is UNSIGNED, and the caller refuses the decision
    when the policy requires a signature. A key that is configured but cannot sign (gone,
    not a key, locked) raises SigningError: the person set out to sign, and a decision
    quietly recorded unsigned would hide that their signing is broken.
    """
    key = signing_key(root)
    if key is None:
        return Verdict(UNSIGNED, "no signing key (set git's user.signingkey with gpg.format=ssh, "
                                 "git config loom.signingkey, or LOOM_SIGNING_KEY)")
    try:
        signature = sign(decision, key)
    except subprocess.TimeoutExpired:
        raise SigningError("ssh-keygen timed out signing") from None
    return verify_committed(decision, signature, root, policy, committed_signers(root, policy))


# -- in `audit verify` -------------------------------------------------------------------------


@dataclass
class SignatureReport:
    """Every decision in the log with its signature's verdict, and what fails."""

    required: bool
    allowed_signers: str
    decisions: list[dict[str, Any]] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (seq, what is wrong)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"required": self.required, "allowed_signers": self.allowed_signers,
                "decisions": self.decisions,
                "problems": [{"seq": seq, "problem": text} for seq, text in self.problems]}


@dataclass(frozen=True, slots=True)
class RequiredSince:
    """The commit on the main branch from which the policy has required signed decisions, and its time."""

    commit: str
    at: datetime


def check_decisions(entries: Iterable[AuditEntry], root: Path, policy: Policy,
                    required_since: RequiredSince | None = None) -> SignatureReport:
    """Check each decision entry's signature against the allowed_signers it was taken under (today's
    committed file for an entry that does not say); bad ones always fail, unsigned ones when required,
    save those in the part of the log written before `required_since` (signing was not asked of them)."""
    today = committed_signers(root, policy)
    versions: dict[str, tuple[int, int]] | None = None  # read once, when an entry names the version it had
    newest_named = None  # the most recent version an earlier decision was checked against (its rank)
    newest_blob = None  # and that version
    required = policy.decisions.require_signature
    report = SignatureReport(required, policy.decisions.allowed_signers)
    before_required = required_since is not None  # still in the log's part written before the requirement
    for entry in entries:
        # The whole prefix, not each entry's own time: an entry appended later with an earlier time comes
        # after one written since, so a backdated unsigned approval is not excused.
        before_required = before_required and required_since is not None and _written_before(entry, required_since)
        if entry.action not in DECISION_ACTIONS:
            continue
        decision = Decision.from_entry(entry)
        signature = entry.details.get("signature")
        kept = entry.details.get("allowed_signers_blob")
        named = kept if isinstance(kept, str) and _BLOB_ID.fullmatch(kept) else None
        if named is not None and versions is None:
            versions = committed_versions(root, policy)
        # Only a version the file has had on this branch: an entry appended after the newest anchor could
        # name any blob in the object store, a file of its writer's own keys.
        blob = named if named is not None and versions is not None and named in versions else today
        verdict = verify_committed(decision, signature if isinstance(signature, str) else None, root, policy, blob)
        if named is not None and blob != named and verdict.status != VERIFIED:
            verdict = replace(verdict, detail=f"{verdict.detail}; the {policy.decisions.allowed_signers} it was "
                                              f"checked against ({named[:12]}) was never on this branch")
        # Where a version was held twice (the file returned to earlier bytes), the reading that flags nothing:
        # a decision as recent as the version's latest time, an earlier one's bar at its earliest.
        ranks = versions.get(blob) if versions is not None and blob is not None else None
        rank = ranks[0] if ranks is not None else None
        if rank is not None and newest_named is not None and rank > newest_named and verdict.status == VERIFIED \
                and verify_committed(decision, signature if isinstance(signature, str) else None, root, policy,
                                     newest_blob).status != VERIFIED:
            # Decisions are taken against the file as it is then: one naming a version older than an earlier
            # decision's came after that one, from a machine behind. It stands if its key is in the newer file
            # too (another's key rotated); one the newer file took out signs nothing after.
            older = (blob or "")[:12]
            verdict = Verdict(BAD, f"checked against an older {policy.decisions.allowed_signers} ({older}) than an "
                                   "earlier decision was: a key taken out of it signs nothing after", signature)
        if ranks is not None and blob == named and (newest_named is None or ranks[1] < newest_named):
            newest_named, newest_blob = ranks[1], blob  # only a version it named, and that was on the branch
        by = entry.details.get("by")
        if verdict.status == VERIFIED and by is not None and by != entry.actor:
            verdict = Verdict(BAD, f"the entry says {by} decided, but it is {entry.actor}'s", signature)
        # A number, as every other command gives an escalation's id.
        escalation = int(entry.subject) if entry.subject.isdigit() else entry.subject
        report.decisions.append({"seq": entry.seq, "escalation": escalation, "decision": decision.decision,
                                 "actor": entry.actor, "status": verdict.status, "detail": verdict.detail})
        if verdict.status == BAD:
            report.problems.append((entry.seq, f"seq {entry.seq}: {entry.action} #{entry.subject} by "
                                               f"{entry.actor} has a bad signature ({verdict.detail})"))
        elif required and before_required and required_since is not None:
            report.decisions[-1]["detail"] = (f"{verdict.detail}, taken before the policy required signed "
                                              f"decisions (from {required_since.commit[:12]})")
        elif required and verdict.status != VERIFIED:
            report.problems.append((entry.seq, f"seq {entry.seq}: {entry.action} #{entry.subject} by "
                                               f"{entry.actor} is {verdict.status}, and the policy requires "
                                               "signed decisions"))
    counts: dict[str, list[int]] = {}
    for item in report.decisions:
        counts.setdefault(item["status"], []).append(item["seq"])
    if report.decisions:
        parts = [f"{len(seqs)} {status}" + (f" (seq {_seq_list(seqs)})" if status != VERIFIED else "")
                 for status, seqs in sorted(counts.items())]
        report.notes.append(f"{plural(len(report.decisions), 'decision')}: {', '.join(parts)}")
    return report


def _written_before(entry: AuditEntry, since: RequiredSince) -> bool:
    try:
        written = datetime.fromisoformat(entry.ts)
    except (TypeError, ValueError):
        return False
    return written.tzinfo is not None and written < since.at


def _seq_list(seqs: list[int], limit: int = 8) -> str:
    return listed([str(s) for s in seqs], limit)
