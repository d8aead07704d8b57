"""The release side: what a bundle is, signed per environment by its release keys (threshold) in 64 bins.

The hub proposes the next version of the one bin a release changes; CI signers
(``skerry keys sign``) or the hub's own release keys (``--release-keys``, dev)
sign it; ``submit_release`` collects signatures and publishes at the threshold.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence

import structlog
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.api.serialization import DeserializationError

from skerry.core import trust
from skerry.core.canonical import sha256_hex
from skerry.core.errors import InvalidInput, NotFound, VerificationError
from skerry.hub.trust.publishing import SERIALIZER, expiry_kind

log = structlog.get_logger("skerry.hub.trust")

# Release targets kept per cluster: the one the director names and the newest (``Releasing.keeps``);
# older ones drop out when their bin is next signed.
MAX_RELEASES_PER_CLUSTER = 2


@dataclasses.dataclass(frozen=True)
class SubmitResult:
    role: str
    version: int
    signatures: int
    threshold: int
    published: bool


def count_valid_signatures(md: Metadata, keys: Mapping[str, object], threshold: int) -> int:
    """Distinct trusted keys whose signature over ``md.signed`` verifies (a key counts once)."""
    from tuf.api.serialization.json import CanonicalJSONSerializer

    payload = CanonicalJSONSerializer().serialize(md.signed)
    good = 0
    for keyid, key in keys.items():
        sig = md.signatures.get(keyid)
        if sig is None:
            continue
        try:
            key.verify_signature(sig, payload)
        except Exception:  # noqa: BLE001 - any failure is a bad signature
            continue
        good += 1
    return good


class Releasing:
    """``TrustRepository``'s release side."""

    def release_holder(self, env: str, path: str) -> str:
        """The role that holds (or would hold) release target ``path``: its hash bin, or the
        unbinned ``release-<env>`` of an environment added without bins."""
        role = trust.release_role(env)
        md = self.md.get(role)
        delegations = md.signed.delegations if md is not None else None
        if delegations is not None and delegations.roles:
            standard = trust.release_bin(env, path)
            if standard in delegations.roles:
                return standard
            for name, delegated in delegations.roles.items():
                if delegated.is_delegated_path(path):
                    return name
        return role

    def keeps(self, path: str, adding: set[tuple[str, str]]) -> bool:
        """Whether a release bin's next version, which adds a release for each ``(env, cluster)`` of
        ``adding``, keeps target ``path``: the director names it (an agent may be verifying it right now),
        or it is its cluster's newest release (about to be directed) and no newer one is being added.
        By use and publication order, never by hash order."""
        parsed = trust.parse_release_path(path)
        if parsed is None:
            return False
        return path == self._directing.get(parsed[1]) or (
            parsed[:2] not in adding and path == self._newest.get(parsed[:2]))

    def release_target(self, env: str, cluster: str, hexdigest: str) -> TargetFile | None:
        path = trust.release_path(env, cluster, hexdigest)
        md = self.md.get(self.release_holder(env, path))
        return md.signed.targets.get(path) if md else None

    def proposal_role(self, env: str, cluster: str, data: bytes) -> str:
        """The release role whose next version CI signs to release ``data`` for ``cluster``: its hash bin."""
        return self.release_holder(env, trust.release_path(env, cluster, sha256_hex(data)))

    def release_proposal(self, env: str, cluster: str, data: bytes, revision: str) -> Metadata:
        """The next version of the release bin holding this bundle, with it added: what CI signers sign."""
        return self._proposal(env, [cluster], data, revision)

    def _proposal(self, env: str, clusters: Sequence[str], data: bytes, revision: str) -> Metadata:
        """Next version of one release role (a bin, or an unbinned ``release-<env>``) adding ``data``
        for every cluster of ``clusters`` (all must fall in that role).

        A target carries only what the agent checks (cluster, environment) and
        the commit: the source URL and paths are inside the bundle document its
        SHA-256 binds, and every field here is parsed and canonically encoded
        twice per refresh by every agent of the bin. The new version keeps, of
        every cluster's targets in the role, only the one the director names and
        the newest release (``keeps``): a cluster's releases fall in other bins
        (their paths hash apart), so each bin sheds what is stale whenever it is
        signed, whoever's release signs it.
        """
        role = trust.release_role(env)
        if role not in (self.targets.delegations.roles or {}):
            raise NotFound(f"environment {env!r} has no release role; add it with `skerry keys add --env {env}`")
        hexdigest = sha256_hex(data)
        paths = [trust.release_path(env, c, hexdigest) for c in clusters]
        holder = self.release_holder(env, paths[0])
        pending = self._pending.get(holder)
        if pending is not None and all(path in pending.signed.targets for path in paths):
            return Metadata.from_bytes(pending.to_bytes(SERIALIZER))
        current = self.md.get(holder)
        if current is not None:
            signed = Targets.from_dict(json.loads(json.dumps(current.signed.to_dict())))
        else:
            signed = Targets()
            signed.version = 0  # a bin's first version is 1
        adding = {(env, cluster) for cluster in clusters}
        for old in [p for p in signed.targets if p not in paths and not self.keeps(p, adding)]:
            del signed.targets[old]
        for cluster, path in zip(clusters, paths, strict=True):
            target = TargetFile(length=len(data), hashes={"sha256": hexdigest}, path=path)
            target.unrecognized_fields["custom"] = {"cluster": cluster, "environment": env, "revision": revision}
            signed.targets[path] = target
        signed.version += 1
        signed.expires = self._now() + self.expiry[expiry_kind(holder)]
        self._keep_blob(hexdigest, data)  # CI signers fetch what they are asked to sign
        for path in paths:
            self._offer(path)
        return Metadata(signed)

    def _auto_release(self, env: str, clusters: Sequence[str], data: bytes, revision: str) -> None:
        """Release ``data`` for ``clusters`` with the hub-held release keys: one signed version per bin."""
        by_role: dict[str, list[str]] = {}
        hexdigest = sha256_hex(data)
        for cluster in clusters:
            self._beat()
            by_role.setdefault(self.release_holder(env, trust.release_path(env, cluster, hexdigest)), []).append(cluster)
        signers = self._release_signers[trust.release_role(env)]
        for role, names in by_role.items():
            self._beat()
            md = self._proposal(env, names, data, revision)
            for signer in signers:
                md.sign(signer, append=True)
            own = len({s.public_key.keyid for s in signers} & set(self.role_keyids(role)))
            if own >= self.role_threshold(role):  # the hub's keys meet the threshold: publish what it signed
                self._publish_release(role, md, own)
            else:  # collected; CI signers add the rest
                self.submit_release(role, md.to_bytes(SERIALIZER))

    def _resolve_release_role(self, role: str, md: Metadata) -> str:
        """``release-<env>`` given for a version of one of its bins names that bin (as CI tools may say)."""
        if trust.is_release_bin(role) or not md.signed.targets:
            return role
        env = role[len(trust.RELEASE_PREFIX):]
        holders = {self.release_holder(env, path) for path in md.signed.targets}
        return holders.pop() if len(holders) == 1 else role

    def submit_release(self, role: str, data: bytes) -> SubmitResult:
        """Collect release signatures; publish the new version once the threshold of distinct keys signed."""
        md, result = self.collect_release(role, data)
        if result.published:
            self.publish_collected(result.role, md, result.signatures)
        return result

    def collect_release(self, role: str, data: bytes) -> tuple[Metadata, SubmitResult]:
        """``submit_release``'s first half: check ``data``'s signatures and keep them with those collected for
        ``role`` (with a storage, a state write: a server calls this off its event loop). ``published`` in
        the result says the threshold is met: ``publish_collected`` publishes the returned version."""
        if len(data) > trust.MAX_METADATA_BYTES:
            raise InvalidInput(f"release metadata is {len(data)} bytes, over {trust.MAX_METADATA_BYTES}")
        try:
            md = Metadata[Targets].from_bytes(data)
        except (DeserializationError, ValueError, TypeError, KeyError) as e:
            raise InvalidInput(f"not TUF targets metadata: {e}") from e
        if role.startswith(trust.RELEASE_PREFIX):
            role = self._resolve_release_role(role, md)
        delegator = self._delegator(role) if (role.startswith(trust.RELEASE_PREFIX) or trust.is_release_bin(role)) else None
        if delegator is None:
            raise NotFound(f"{role!r} is not a release role of this repository")
        env = trust.release_env_of_bin(role) if trust.is_release_bin(role) else role[len(trust.RELEASE_PREFIX):]
        for path in md.signed.targets:
            parsed = trust.parse_release_path(path)
            if parsed is None or parsed[0] != env:
                raise VerificationError(f"target {path!r} is outside releases/{env}/", reason="PathTraversal")
            if self.release_holder(env, path) != role:
                raise VerificationError(f"target {path!r} does not belong in {role}", reason="PathTraversal")
        current = self.md.get(role)
        want = (current.signed.version if current else 0) + 1
        if md.signed.version != want:
            raise VerificationError(f"{role} version {md.signed.version}, expected {want}", reason="Rollback")
        delegation = delegator.delegations.roles[role]
        keys = {k: delegator.delegations.keys[k] for k in delegation.keyids}
        for keyid in md.signatures:
            if keyid not in keys:
                raise VerificationError(f"{role} signed by key {keyid[:12]}…, not one of its keys", reason="BadSignature")
        if count_valid_signatures(md, keys, delegation.threshold) != len(md.signatures):
            raise VerificationError(f"a signature on {role} does not verify", reason="BadSignature")
        pending = self._pending.get(role)
        if pending is not None and pending.signed == md.signed:
            for keyid, sig in md.signatures.items():
                pending.signatures[keyid] = sig
            md = pending
        self._pending[role] = md
        good = count_valid_signatures(md, keys, delegation.threshold)
        if good < delegation.threshold:
            log.info("release signature collected", role=role, version=md.signed.version, signatures=good,
                     threshold=delegation.threshold)
        return md, SubmitResult(role, md.signed.version, good, delegation.threshold, good >= delegation.threshold)

    def publish_collected(self, role: str, md: Metadata, signatures: int) -> bool:
        """Publish ``collect_release``'s version of ``role`` (its threshold met); False if it was published
        meanwhile (another submission, or the follower: ``skerry.hub.replica``)."""
        current = self.md.get(role)
        if current is not None and current.signed.version >= md.signed.version:
            return False
        del self._pending[role]
        self._publish_release(role, md, signatures)
        return True

    def _publish_release(self, role: str, md: Metadata, signatures: int) -> None:
        """Write a release role's new version (its threshold met) and publish it with a snapshot."""
        current = self.md.get(role)
        with self.batch():  # listeners direct the released clusters: one snapshot for both
            self._write(role, md)
            before = current.signed.targets if current is not None else {}
            for path in md.signed.targets.keys() - before.keys():
                self._unlinked[path] = md.signed.targets[path].hashes.get("sha256", "")
                parsed = trust.parse_release_path(path)
                self._newest[parsed[:2]] = path
            self._released(md.signed.targets)
            self._commit([role])
            log.info("release published", role=role, version=md.signed.version, signatures=signatures)
            self._notify(role)

    def pending(self, role: str) -> Metadata | None:
        return self._pending.get(role)
