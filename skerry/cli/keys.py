"""``skerry keys``: the trust repository's keys and the CI release signer.

``init|add|revoke|rotate-root|status`` work on a trust directory (run them
where the offline keys are; a running hub picks the changes up). ``sign``
is what CI runs per cluster: it asks the hub which bundle awaits release
signatures, renders that cluster itself at the same commit (``skerry
render`` is deterministic), and signs the proposed ``release-<env>``
version only if the bundle digest it rendered equals the one proposed and
the proposal adds nothing but that bundle.
"""

from __future__ import annotations

import pathlib
import sys

from skerry.cli.contexts import add_hub_flags, resolve_hub
from skerry.cli.output import add_output_flag, emit

COMMAND = "skerry keys"
DEV_WARNING = """\
**********************************************************************************************
WARNING: --dev: {dir} holds EVERY key (root, targets, director, timestamp, snapshot and the
release keys of every environment) and `skerry hub serve --trust-dir {dir}` will release every
bundle itself. The split that stops a compromised hub from shipping alone is OFF: anyone who can
read {dir} can ship anything to every cluster. One operator's trial only; for production run
`skerry keys init` without --dev and move {dir}/offline off the hub.
Agents bootstrap from {dir}/root.json.
**********************************************************************************************"""


def _fail(message: str) -> int:
    print(f"{COMMAND}: error: {message}", file=sys.stderr)
    return 1


def add_commands(subparsers) -> None:
    keys = subparsers.add_parser("keys", help="manage the TUF trust repository's keys; sign releases (CI)")
    sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("init", help="create a trust directory: root, targets, director and release roles")
    p.add_argument("--trust-dir", required=True, type=pathlib.Path)
    p.add_argument("--env", action="append", default=[], metavar="ENV[:KEYS:THRESHOLD]",
                   help="an environment with its release keys and threshold, e.g. prod:3:2 (default 1:1)")
    p.add_argument("--root-keys", type=int, default=1)
    p.add_argument("--root-threshold", type=int, default=1)
    p.add_argument("--offline-dir", type=pathlib.Path, help="where offline keys go (default <trust-dir>/offline)")
    p.add_argument("--dev", action="store_true",
                   help="single operator: the hub holds every key and releases every bundle itself (NOT for production)")
    p.set_defaults(func=_init)

    p = sub.add_parser("add", help="add a public key to a role (root signs top-level roles, targets the rest)")
    p.add_argument("--trust-dir", required=True, type=pathlib.Path)
    p.add_argument("--role", required=True, help="root|targets|snapshot|timestamp|director|release-<env>")
    p.add_argument("--key", required=True, help="key file or its .pub.json to add (a new key file is created if missing)")
    p.add_argument("--threshold", type=int)
    p.add_argument("--signing-key", action="append", required=True,
                   help="key(s) that sign the change: root's for top-level roles, targets' for the rest; for "
                        "release-<env> also a threshold of its new release keys (it and its bins are re-signed)")
    p.set_defaults(func=_add)

    p = sub.add_parser("revoke", help="remove a key from a role")
    p.add_argument("--trust-dir", required=True, type=pathlib.Path)
    p.add_argument("--role", required=True)
    p.add_argument("--keyid", required=True, help="key id (or a unique prefix)")
    p.add_argument("--threshold", type=int)
    p.add_argument("--signing-key", action="append", required=True,
                   help="as for `add`: for release-<env>, a threshold of its remaining release keys too")
    p.set_defaults(func=_revoke)

    p = sub.add_parser("rotate-root", help="root N+1 with new root keys, signed by old and new thresholds")
    p.add_argument("--trust-dir", required=True, type=pathlib.Path)
    p.add_argument("--old-key", action="append", required=True)
    p.add_argument("--new-key", action="append", required=True, help="new root key file (created if missing)")
    p.add_argument("--threshold", type=int, default=1)
    p.set_defaults(func=_rotate)

    p = sub.add_parser("status", help="every role: version, expiry, keys, threshold")
    p.add_argument("--trust-dir", required=True, type=pathlib.Path)
    add_output_flag(p)
    p.set_defaults(func=_status)

    p = sub.add_parser("sign", help="CI: render a cluster's pending bundle yourself and sign its release",
                       description="The hub and TLS files come from the flags, else SKERRY_HUB / SKERRY_TLS_*, "
                       "else the current context. The objects are compared, not the engine; the hub image renders "
                       "with in-process pykustomize at the version deploy/constraints.txt pins, the surest match.")
    add_hub_flags(p)
    p.add_argument("--key", action="append", required=True, help="release key(s) to sign with")
    p.add_argument("--repo", required=True, help="the Git repository, as the hub names it")
    p.add_argument("--branch", default="main")
    p.add_argument("--cluster", required=True)
    p.add_argument("--engine", choices=("auto", "inprocess", "binary"), default="auto",
                   help="kustomize to render with (it need not be the hub's: the engine is not part of the digest)")
    p.set_defaults(func=_sign)


def _wrap(fn):
    from skerry.core.errors import SkerryError

    try:
        return fn()
    except SkerryError as e:
        return _fail(str(e))


def _key_or_new(ref: str):
    from skerry.hub.trust import keys as keyfiles

    path = pathlib.Path(ref)
    if not path.exists() and not ref.endswith(".pub.json"):
        return keyfiles.generate_key(path)
    return keyfiles.load_signer(path) if not ref.endswith(".pub.json") else None


def _init(args) -> int:
    from skerry.hub.trust import admin

    def run():
        envs = {}
        for spec in args.env or ["default"]:
            name, *rest = spec.split(":")
            n, t = (int(rest[0]), int(rest[1])) if len(rest) == 2 else (1, 1)
            envs[name] = (n, t)
        made = admin.init(args.trust_dir, envs, root_keys=args.root_keys, root_threshold=args.root_threshold,
                          offline_dir=args.offline_dir, dev=args.dev)
        for role, paths in made.items():
            for p in paths:
                print(f"{role:20} {p}")
        if args.dev:
            print(DEV_WARNING.format(dir=args.trust_dir), file=sys.stderr)
        else:
            print(f"agents bootstrap from {args.trust_dir / 'root.json'}; move the offline keys off the hub",
                  file=sys.stderr)
        return 0
    return _wrap(run)


def _signers(refs):
    from skerry.hub.trust import keys as keyfiles

    return [keyfiles.load_signer(r) for r in refs]


def _add(args) -> int:
    from skerry.hub.trust import admin
    from skerry.hub.trust import keys as keyfiles

    def run():
        signer = _key_or_new(args.key)
        public = signer.public_key if signer is not None else keyfiles.load_public(args.key)
        md = admin.add_key(args.trust_dir, args.role, public, _signers(args.signing_key), threshold=args.threshold)
        print(f"{args.role}: added key {public.keyid[:12]} ({md.signed.type} v{md.signed.version})")
        return 0
    return _wrap(run)


def _revoke(args) -> int:
    from skerry.hub.trust import admin
    from skerry.hub.trust.repository import TrustRepository

    def run():
        repo = TrustRepository(args.trust_dir, online={})
        matches = [k for k in repo.role_keyids(args.role) if k.startswith(args.keyid)]
        if len(matches) != 1:
            return _fail(f"{args.keyid!r} matches {len(matches)} key(s) of {args.role}")
        md = admin.revoke_key(args.trust_dir, args.role, matches[0], _signers(args.signing_key),
                              threshold=args.threshold)
        print(f"{args.role}: revoked key {matches[0][:12]} ({md.signed.type} v{md.signed.version})")
        return 0
    return _wrap(run)


def _rotate(args) -> int:
    from skerry.hub.trust import admin

    def run():
        new = [_key_or_new(r) for r in args.new_key]
        md = admin.rotate_root(args.trust_dir, _signers(args.old_key), new, threshold=args.threshold)
        print(f"root v{md.signed.version}: keys {', '.join(k[:12] for k in md.signed.roles['root'].keyids)}")
        return 0
    return _wrap(run)


def _status(args) -> int:
    from skerry.hub.trust import admin

    def run():
        rows = admin.status(args.trust_dir)
        for r in rows:
            r["signers"] = f"{r['threshold']} of {len(r['keys'])}"
        emit(rows, args.output, columns=("role", "version", "expires", "expires_in_hours", "signers"),
             wide=("keys",), document=rows)
        return 0
    return _wrap(run)


def _sign(args) -> int:
    from skerry.hub.sync import render_bundle
    from skerry.hub.trust.signing import sign_release

    def run():
        target = resolve_hub(vars(args))
        result = sign_release(target.address, target.tls_files, args.cluster,
                              lambda revision: render_bundle(args.repo, args.cluster, args.branch, revision, args.engine),
                              _signers(args.key))
        state = "published" if result.published else "collected"
        print(f"release signatures {state}: {result.signatures} of {result.threshold} (version {result.version})")
        return 0
    return _wrap(run)
