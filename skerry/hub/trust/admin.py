"""Offline key management on a trust directory: init, add, revoke, rotate-root, status.

Each change to an offline-signed role writes its next version signed by the
keys given on the command line; a running hub picks it up on its next
refresh tick (``TrustRepository.reload``) and publishes a new snapshot and
timestamp. Root changes follow TUF's chain rule: version N+1 must be signed
by a threshold of version N's root keys *and* of its own, so a client walks
1.root.json → 2.root.json → … and a rotation with a broken link is refused.
"""

from __future__ import annotations

import datetime as _dt
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence

from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, Role, Root, Targets

from skerry.core import trust
from skerry.core.clock import Clock, SystemClock
from skerry.core.errors import ConfigError, InvalidInput
from skerry.hub.trust import keys as keyfiles
from skerry.hub.trust.repository import (
    _SERIALIZER,
    CONFIG_FILE,
    DEFAULT_EXPIRY,
    DEV_RELEASE_KEYS,
    TrustRepository,
    _atomic_write,
    count_valid_signatures,
    expiry_kind,
)

TOP_ROLES = ("root", "targets", "snapshot", "timestamp")


def _now(clock: Clock) -> _dt.datetime:
    return clock.now().replace(microsecond=0)


def init(
    directory: str | pathlib.Path,
    environments: Mapping[str, tuple[int, int]],
    *,
    root_keys: int = 1,
    root_threshold: int = 1,
    offline_dir: str | pathlib.Path | None = None,
    clock: Clock | None = None,
    expiry: Mapping[str, _dt.timedelta] | None = None,
    dev: bool = False,
) -> dict[str, list[pathlib.Path]]:
    """Create a trust directory: keys, root v1, targets with the director and one release role per env.

    ``environments`` maps env -> (number of release keys, threshold), e.g.
    ``{"dev": (1, 1), "prod": (3, 2)}``. Returns the key files made, per role.

    ``dev``: a single operator's setup. ``config.json`` names every environment's release keys
    (``"dev_release_keys"``) and ``TrustRepository.open`` gives them to the hub, which then
    releases every bundle itself: the director/release split is gone and whoever reads the trust
    directory can ship anything. The hub says so at every start (``skerry.hub.trust.repository``).
    """
    clock = clock or SystemClock()
    exp = {**DEFAULT_EXPIRY, **(expiry or {})}
    directory = pathlib.Path(directory)
    if (directory / "repository").exists():
        raise ConfigError(f"{directory} already holds a trust repository")
    if not 1 <= root_threshold <= root_keys:
        raise InvalidInput(f"root threshold {root_threshold} must be between 1 and {root_keys}")
    for env, (n, threshold) in environments.items():
        if not trust.valid_name(env) or not 1 <= threshold <= n:
            raise InvalidInput(f"environment {env!r}: name must be a DNS label and 1 <= threshold {threshold} <= {n}")
    made, signers = _make_keys(directory, pathlib.Path(offline_dir) if offline_dir else directory / "offline",
                               root_keys, environments)
    now = _now(clock)
    root_md = Metadata(_root(signers, root_threshold, now + exp["root"]))
    for signer in signers["root"]:
        root_md.sign(signer, append=True)
    mds = {"root": root_md, **_targets_and_releases(signers, environments, now, exp)}
    meta = directory / "repository" / "metadata"
    meta.mkdir(parents=True)
    (directory / "repository" / "targets").mkdir(parents=True)
    for role, md in mds.items():
        _atomic_write(meta / f"1.{role}.json", md.to_bytes(_SERIALIZER))
    config: dict = {"environments": {e: {"keys": n, "threshold": t} for e, (n, t) in environments.items()}}
    if dev:
        config[DEV_RELEASE_KEYS] = {env: [str(p.relative_to(directory)) if p.is_relative_to(directory) else str(p)
                                          for p in made[trust.release_role(env)]] for env in environments}
    _atomic_write(directory / CONFIG_FILE, json.dumps(config, indent=2).encode() + b"\n")
    _atomic_write(directory / "root.json", root_md.to_bytes(_SERIALIZER))
    repo = TrustRepository(directory, clock=clock, expiry=expiry)
    repo.delegate_director_bins()  # and the first snapshot + timestamp
    return made


def _make_keys(directory: pathlib.Path, offline: pathlib.Path, root_keys: int,
               environments: Mapping[str, tuple[int, int]]) -> tuple[dict[str, list[pathlib.Path]], dict[str, list[Signer]]]:
    """Key files per role (online ones under ``keys/``, the rest under ``offline``) and their signers."""
    made: dict[str, list[pathlib.Path]] = {}
    signers: dict[str, list[Signer]] = {}

    def gen(role: str, path: pathlib.Path) -> None:
        made.setdefault(role, []).append(path)
        signers.setdefault(role, []).append(keyfiles.generate_key(path))

    for i in range(1, root_keys + 1):
        gen("root", offline / f"root-{i}.key")
    gen("targets", offline / "targets.key")
    for role in ("timestamp", "snapshot", trust.DIRECTOR_ROLE):
        gen(role, directory / "keys" / f"{role}.key")
    for env, (n, _threshold) in environments.items():
        for i in range(1, n + 1):
            gen(trust.release_role(env), offline / f"release-{env}-{i}.key")
    return made, signers


def _root(signers: Mapping[str, Sequence[Signer]], root_threshold: int, expires: _dt.datetime) -> Root:
    root = Root(expires=expires, consistent_snapshot=True)
    for signer in signers["root"]:
        root.add_key(signer.public_key, "root")
    root.roles["root"].threshold = root_threshold
    for role in ("targets", "snapshot", "timestamp"):
        root.add_key(signers[role][0].public_key, role)
    return root


def _targets_and_releases(signers: Mapping[str, Sequence[Signer]], environments: Mapping[str, tuple[int, int]],
                          now: _dt.datetime, exp: Mapping[str, _dt.timedelta]) -> dict[str, Metadata]:
    """targets (the director first, then each ``release-<env>``), the empty director, each
    ``release-<env>`` with its 64 empty bins: version 1 of each, signed."""
    targets = Targets(expires=now + exp["targets"])
    targets.delegations = Delegations(keys={}, roles={})
    director_key = signers[trust.DIRECTOR_ROLE][0].public_key
    targets.delegations.keys[director_key.keyid] = director_key
    # Not terminating, and first: a client's walk for a path goes on to release-<env> (the same path)
    # when the director's bin does not list it (``skerry.core.trust.lookup``).
    targets.delegations.roles[trust.DIRECTOR_ROLE] = DelegatedRole(
        name=trust.DIRECTOR_ROLE, keyids=[director_key.keyid], threshold=1, terminating=False,
        paths=["releases/*/*/*"]
    )
    mds: dict[str, Metadata] = {}
    for env, (_n, threshold) in environments.items():
        own = signers[trust.release_role(env)]
        keys = [s.public_key for s in own]
        _delegate_release(targets, env, keys, threshold)
        mds[trust.release_role(env)] = Metadata(release_bins(env, keys, threshold, now + exp["release-env"]))
        for name in trust.release_bin_names(env):  # every bin exists (empty): an unreleased image is NotReleased
            mds[name] = Metadata(Targets(expires=now + exp["release"]))
        for name in [trust.release_role(env), *trust.release_bin_names(env)]:
            for s in own:
                mds[name].sign(s, append=True)
    targets_md = Metadata(targets)
    targets_md.sign(signers["targets"][0])
    director_md = Metadata(Targets(expires=now + exp["director"]))
    director_md.sign(signers[trust.DIRECTOR_ROLE][0])
    return {"targets": targets_md, trust.DIRECTOR_ROLE: director_md, **mds}


def release_bins(env: str, keys: Sequence[Key], threshold: int, expires: _dt.datetime) -> Targets:
    """``release-<env>``: no targets, a standard TUF hash-bin delegation of ``releases/<env>/`` to
    ``releases-<env>-<hh>`` (``path_hash_prefixes``), each bin with the environment's release keys
    and threshold. Signed once by those keys when the environment is made (offline); each release
    then re-signs only the bin it changes (CI), never this role."""
    signed = Targets(expires=expires)
    signed.delegations = Delegations(keys={k.keyid: k for k in keys}, roles={})
    for name in trust.release_bin_names(env):
        signed.delegations.roles[name] = DelegatedRole(
            name=name, keyids=[k.keyid for k in keys], threshold=threshold, terminating=True,
            path_hash_prefixes=trust.bin_prefixes(name.rsplit("-", 1)[1]))
    return signed


def _delegate_release(targets: Targets, env: str, keys: Sequence[Key], threshold: int) -> None:
    for key in keys:
        targets.delegations.keys[key.keyid] = key
    role = trust.release_role(env)
    targets.delegations.roles[role] = DelegatedRole(
        name=role, keyids=[k.keyid for k in keys], threshold=threshold, terminating=True, paths=[f"releases/{env}/*/*"]
    )


def _now_plus(repo: TrustRepository, role: str, clock: Clock) -> _dt.datetime:
    return _now(clock) + repo.expiry["root" if role == "root" else expiry_kind(role)]


def _next(repo: TrustRepository, role: str, signers: Sequence[Signer], edit: Callable, clock: Clock,
          extra_signers: Sequence[Signer] = ()) -> Metadata:
    """``role``'s next version (root or targets), edited, signed by those of ``signers`` that are its keys."""
    md = Metadata.from_bytes(repo.md[role].to_bytes(_SERIALIZER))
    edit(md.signed)
    md.signed.version += 1
    md.signed.expires = _now_plus(repo, role, clock)
    # Refuse to write what clients would refuse: a root must satisfy the old and its own threshold,
    # targets the root's targets threshold (otherwise agents stop at a broken chain).
    if role == "root":
        _sign(md, [*signers, *extra_signers], None)
        _verified(md, role, lambda: (repo.root.verify_delegate("root", md.signed_bytes, md.signatures),
                                     md.signed.verify_delegate("root", md.signed_bytes, md.signatures)),
                  " of both the current and the new root")
    else:
        _sign(md, signers, set(repo.root.roles["targets"].keyids))
        _verified(md, role, lambda: repo.root.verify_delegate("targets", md.signed_bytes, md.signatures))
    _write(repo, role, md)
    return md


def _sign(md: Metadata, signers: Sequence[Signer], keyids: set[str] | None) -> None:
    """Sign with each of ``signers`` whose key is one of ``keyids`` (``None``: all of them)."""
    md.signatures.clear()
    for signer in signers:
        if keyids is None or signer.public_key.keyid in keyids:
            md.sign(signer, append=True)


def _verified(md: Metadata, role: str, check: Callable, whose: str = "") -> None:
    try:
        check()
    except UnsignedMetadataError as e:
        raise InvalidInput(f"{role} v{md.signed.version} would not verify ({e}): sign it with the {role} keys"
                           + whose) from e


def _write(repo: TrustRepository, role: str, md: Metadata) -> None:
    data = md.to_bytes(_SERIALIZER)
    _atomic_write(repo.metadata_dir / f"{md.signed.version}.{role}.json", data)
    repo.md[role] = md
    if role == "root":
        _atomic_write(repo.directory / "root.json", data)


def _follow_release_keys(repo: TrustRepository, env: str, signers: Sequence[Signer], clock: Clock) -> None:
    """After ``targets`` changed ``release-<env>``'s keys or threshold: its next version gives every bin
    the same keys and threshold (signed by a threshold of the new keys), and each bin whose signatures
    no longer meet them is re-signed, so a revoked key signs nothing clients accept and an added one
    can sign the next release. An unbinned ``release-<env>`` (its targets in the role) needs neither."""
    role = trust.release_role(env)
    current = repo.md.get(role)
    if current is None or current.signed.delegations is None or not current.signed.delegations.roles:
        return
    targets = repo.md["targets"].signed
    delegation = targets.delegations.roles[role]
    keys = {k: targets.delegations.keys[k] for k in delegation.keyids}
    md = Metadata.from_bytes(current.to_bytes(_SERIALIZER))
    md.signed.delegations.keys = dict(keys)
    for bin_role in md.signed.delegations.roles.values():
        bin_role.keyids, bin_role.threshold = list(delegation.keyids), delegation.threshold
    md.signed.version += 1
    md.signed.expires = _now_plus(repo, role, clock)
    _sign(md, signers, set(keys))
    _verified(md, role, lambda: targets.verify_delegate(role, md.signed_bytes, md.signatures),
              f" (a threshold of {delegation.threshold} of its new keys, as --signing-key)")
    _write(repo, role, md)
    for name in md.signed.delegations.roles:
        held = repo.md.get(name)
        if held is None or count_valid_signatures(held, keys, delegation.threshold) >= delegation.threshold:
            continue
        resigned = Metadata.from_bytes(held.to_bytes(_SERIALIZER))
        resigned.signed.version += 1
        resigned.signed.expires = _now_plus(repo, name, clock)
        _sign(resigned, signers, set(keys))
        _verified(resigned, name, lambda r=resigned, n=name: md.signed.verify_delegate(n, r.signed_bytes, r.signatures))
        _write(repo, name, resigned)


def add_key(directory, role: str, public: Key, signers: Sequence[Signer], *, threshold: int | None = None,
            clock: Clock | None = None) -> Metadata:
    """Add ``public`` to ``role`` (a top-level role: root signs; a delegated one or a new env: targets signs,
    and a threshold of a binned ``release-<env>``'s new keys re-signs it)."""
    clock = clock or SystemClock()
    repo = TrustRepository(directory, online={}, clock=clock)
    if role in TOP_ROLES:
        def edit(root: Root) -> None:
            root.add_key(public, role)
            if threshold:
                root.roles[role].threshold = threshold
        return _next(repo, "root", signers, edit, clock)

    def edit_targets(targets: Targets) -> None:
        if targets.delegations is None:
            targets.delegations = Delegations(keys={}, roles={})
        if role not in targets.delegations.roles:
            if not role.startswith(trust.RELEASE_PREFIX):
                raise InvalidInput(f"unknown role {role!r}")
            _delegate_release(targets, role[len(trust.RELEASE_PREFIX):], [public], threshold or 1)
            return
        targets.add_key(public, role)
        if threshold:
            targets.delegations.roles[role].threshold = threshold
    md = _next(repo, "targets", signers, edit_targets, clock)
    if role.startswith(trust.RELEASE_PREFIX):
        _follow_release_keys(repo, role[len(trust.RELEASE_PREFIX):], signers, clock)
    return md


def revoke_key(directory, role: str, keyid: str, signers: Sequence[Signer], *, threshold: int | None = None,
               clock: Clock | None = None) -> Metadata:
    clock = clock or SystemClock()
    repo = TrustRepository(directory, online={}, clock=clock)
    holder = "root" if role in TOP_ROLES else "targets"

    def edit(signed) -> None:
        r: Role = signed.roles[role] if holder == "root" else signed.delegations.roles[role]
        if keyid not in r.keyids:
            raise InvalidInput(f"key {keyid[:12]}… is not a key of {role}")
        signed.revoke_key(keyid, role)
        if threshold:
            r.threshold = threshold
        if r.threshold > len(r.keyids):
            raise InvalidInput(f"revoking leaves {role} with {len(r.keyids)} key(s), below its threshold {r.threshold}")
    md = _next(repo, holder, signers, edit, clock)
    if role.startswith(trust.RELEASE_PREFIX):
        _follow_release_keys(repo, role[len(trust.RELEASE_PREFIX):], signers, clock)
    return md


def rotate_root(directory, old_signers: Sequence[Signer], new_keys: Sequence[Signer], *, threshold: int = 1,
                clock: Clock | None = None) -> Metadata:
    """Root N+1 with ``new_keys`` as root keys, signed by the old keys (N's threshold) and the new ones."""
    clock = clock or SystemClock()
    repo = TrustRepository(directory, online={}, clock=clock)

    def edit(root: Root) -> None:
        for keyid in list(root.roles["root"].keyids):
            root.revoke_key(keyid, "root")
        for signer in new_keys:
            root.add_key(signer.public_key, "root")
        root.roles["root"].threshold = threshold
    return _next(repo, "root", old_signers, edit, clock, extra_signers=new_keys)


def status(directory, clock: Clock | None = None) -> list[dict]:
    """Every role: version, expiry, keys, threshold, and signatures collected for a pending release."""
    clock = clock or SystemClock()
    repo = TrustRepository(directory, online={}, clock=clock)
    now = clock.now()
    rows = []
    for role in sorted(repo.md, key=lambda r: (r not in TOP_ROLES, r)):
        md = repo.md[role]
        rows.append({
            "role": role,
            "version": md.signed.version,
            "expires": md.signed.expires.isoformat(),
            "expires_in_hours": round((md.signed.expires - now).total_seconds() / 3600, 1),
            "keys": [k[:12] for k in repo.role_keyids(role)],
            "threshold": repo.role_threshold(role),
        })
    return rows
