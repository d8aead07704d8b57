"""``skerry sealer serve`` (the sealer service) and ``skerry sealer keys`` (offline key administration).

``serve`` takes one flag per ``SealerConfig`` setting (``skerry.core.config``: each flag's help names its
``SKERRY_SEALER_*`` variable). Heavy imports (grpc, cryptography) happen inside the handlers so ``--help``
stays fast. A failure prints one line, ``skerry sealer serve: error: ...``, and exits 1; never a traceback.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from skerry.cli.errors import fail
from skerry.cli.output import add_output_flag, emit
from skerry.cli.service import serve
from skerry.core import config as settings
from skerry.core.errors import InvalidInput, SkerryError
from skerry.sealer.config import ENV_PREFIX, SealerConfig

KEYS_EPILOG = """\
the life of a key:
  a new sealing key every 30 days (the sealer does it; `rotate` does it now, e.g. on suspected
  compromise) -> `skerry seal --re-encrypt --in-place REPO` -> commit -> `retire KEY --repo REPO`
  refuses while any SealedSecret in REPO still opens with KEY. The running sealer re-reads
  storage every minute. Keep backups: `backup -f FILE` and `restore FILE`.
"""


def add_commands(subparsers) -> None:
    """Add ``sealer`` (``serve``, ``keys``) to an argparse sub-parsers object."""
    sealer = subparsers.add_parser("sealer", help="run the sealer service", description="The sealer service.")
    sealer_sub = sealer.add_subparsers(dest="sealer_command", metavar="COMMAND", required=True)
    sealer.set_defaults(func=lambda args: _print_help(sealer))
    _add_serve(sealer_sub)
    _add_keys(sealer_sub)


def _add_serve(sealer_sub) -> None:
    serve = sealer_sub.add_parser(
        "serve",
        help="serve GetCertificate and Unseal over mutual TLS",
        description="Serve the sealer. Every flag can also be set as SKERRY_SEALER_<FLAG> (named in its help); flags win.",
    )
    settings.add_flags(serve, SealerConfig, ENV_PREFIX)  # one flag per SealerConfig setting
    serve.set_defaults(func=serve_command)


def _add_keys(sealer_sub) -> None:
    keys = sealer_sub.add_parser(
        "keys",
        help="list, rotate, retire, back up and restore sealing keys",
        description="Offline key administration on the sealer's key storage.",
        epilog=KEYS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    keys.add_argument("--keys-dir", type=pathlib.Path, required=True, metavar="DIR", help="sealing keys directory")
    keys.add_argument("--kek-file", type=pathlib.Path, metavar="FILE", help="key-encryption key (32 bytes)")
    keys.add_argument("--domain", default="default", help="key domain (default: default)")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    listing = keys_sub.add_parser("list", help="keys of the domain, newest (sealing) first")
    add_output_flag(listing)
    rotate = keys_sub.add_parser("rotate", help="add a new sealing key now (early renewal)")
    rotate.add_argument("--compromised", metavar="KEY_ID", help="the key suspected compromised (logged)")
    retire = keys_sub.add_parser("retire", help="remove a key once no SealedSecret in --repo needs it")
    retire.add_argument("key_id", metavar="KEY_ID")
    retire.add_argument("--repo", type=pathlib.Path, nargs="+", required=True, metavar="PATH",
                        help="checkouts/directories whose SealedSecrets must not need the key")
    backup = keys_sub.add_parser("backup", help="write every key of the domain(s) to a file (0600)")
    backup.add_argument("-f", "--file", dest="backup_file", type=pathlib.Path, required=True, metavar="FILE",
                        help="the backup file to write (0600)")
    backup.add_argument("--all-domains", action="store_true", help="every domain under --keys-dir")
    restore = keys_sub.add_parser("restore", help="add the keys of a backup that storage lacks")
    restore.add_argument("input", type=pathlib.Path, metavar="FILE")
    keys.set_defaults(func=keys_command)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def keys_command(args: argparse.Namespace) -> int:
    try:
        return _keys(args)
    except SkerryError as e:
        return fail(f"skerry sealer keys {args.keys_command}", str(e))
    except KeyboardInterrupt:
        return 130


def _keys(args: argparse.Namespace) -> int:
    import json
    import os

    from skerry.core import logging as skerry_logging
    from skerry.core.files import read_bounded
    from skerry.sealer import retire as retire_mod
    from skerry.sealer.keys import KeyRegistry, load_kek, normalize_domain

    skerry_logging.configure("warning")
    kek = load_kek(path=args.kek_file) if args.kek_file else None
    registry = KeyRegistry.from_directory(args.keys_dir, kek=kek)
    domain = normalize_domain(args.domain)
    if args.keys_command == "list":
        rows = [{"key-id": k.key_id, "created": f"{k.created:%Y-%m-%dT%H:%M:%SZ}",
                 "role": "sealing" if i == 0 else "unseal-only", "domain": domain}
                for i, k in enumerate(registry.stored_keys(domain))]
        emit(rows, args.output, columns=("key-id", "created", "role"), wide=("domain",))
        return 0
    if args.keys_command == "rotate":
        registry.open(domain)
        new = registry.add_key(domain)
        if args.compromised:
            print(f"key {args.compromised} marked as suspected compromised: re-encrypt, then retire it", file=sys.stderr)
        print(new.key_id)
        return 0
    if args.keys_command == "retire":
        users = retire_mod.sealed_secrets_needing(registry, domain, args.key_id, args.repo)
        if users:
            shown = "\n  ".join(users[:20])
            raise InvalidInput(
                f"{len(users)} SealedSecret(s) still open only with key {args.key_id}; re-encrypt them first:\n  {shown}"
            )
        registry.retire(domain, args.key_id)
        print(f"retired {args.key_id}", file=sys.stderr)
        return 0
    if args.keys_command == "backup":
        domains = (
            [p.name for p in sorted(args.keys_dir.iterdir()) if p.is_dir()] if args.all_domains else [domain]
        )
        doc = registry.backup_document(domains, kek=kek)
        fd = os.open(args.backup_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
        count = sum(len(v) for v in doc["domains"].values())
        note = "encrypted with the KEK" if kek else "NOT encrypted: protect it like the keys"
        print(f"backed up {count} key(s) of {', '.join(domains)} to {args.backup_file} ({note})", file=sys.stderr)
        return 0
    if args.keys_command == "restore":
        raw = read_bounded(args.input, retire_mod.MAX_BACKUP_BYTES, f"key backup {args.input}")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise InvalidInput(f"{args.input}: not a JSON key backup") from None
        restored = registry.restore_document(doc, kek=kek)
        total = sum(len(v) for v in restored.values())
        print(f"restored {total} key(s)" + "".join(f"; {d}: {len(v)}" for d, v in restored.items()), file=sys.stderr)
        return 0
    raise InvalidInput(f"unknown keys action {args.keys_command}")


def serve_command(args: argparse.Namespace) -> int:
    from skerry.sealer.app import run

    return serve("skerry sealer serve", SealerConfig, args, run)
