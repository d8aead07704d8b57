"""The sealer's command line: ``skerry seal`` and ``skerry sealer serve``.

``add_commands`` plugs both into the top-level ``skerry`` parser; this module
also runs on its own (``python -m skerry.sealer.cli``). Heavy imports (grpc,
cryptography) happen inside the handlers so ``--help`` stays fast. A failure
prints one line, ``skerry seal: error: ...``, and exits 1; never a traceback.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from skerry.cli.output import add_output_flag, emit
from skerry.cli.parser import duration_type
from skerry.core import config as settings
from skerry.sealer.config import ENV_PREFIX, SealerConfig

SEAL_EPILOG = """\
examples:
  skerry seal -f secret.yaml --cert sealer.crt > sealed.yaml
  skerry seal -f secret.yaml --cert http://sealer:8080/v1/cert.pem --domain no-oslo,eu-west > sealed.yaml
  kubectl create secret generic db --from-literal=password=s3cr3t --dry-run=client -o yaml \\
    | skerry seal --sealer sealer:7443 --tls-ca ca.crt --tls-cert me.crt --tls-key me.key
  skerry seal --fetch-cert --sealer sealer:7443 --tls-ca ca.crt --tls-cert me.crt --tls-key me.key
  skerry seal --raw --name db --namespace shop --from-file password.txt --cert sealer.crt
  skerry seal --merge-into sealed.yaml -f extra-items.yaml --cert sealer.crt
  skerry seal --validate -f sealed.yaml --sealer sealer:7443 --tls-ca ... (operator identity)
  skerry seal --re-encrypt --in-place repo/ --sealer sealer:7443 --tls-ca ... (operator identity)
  skerry seal --recovery-unseal --recovery-private-key backup.json -f sealed.yaml
"""

KEYS_EPILOG = """\
the life of a key:
  a new sealing key every 30 days (the sealer does it; `rotate` does it now, e.g. on suspected
  compromise) -> `skerry seal --re-encrypt --in-place REPO` -> commit -> `retire KEY --repo REPO`
  refuses while any SealedSecret in REPO still opens with KEY. The running sealer re-reads
  storage every minute. Keep backups: `backup -f FILE` and `restore FILE`.
"""


def add_commands(subparsers) -> None:
    """Add ``seal`` and ``sealer`` (``serve``, ``keys``) to an argparse sub-parsers object."""
    _add_seal(subparsers)
    sealer = subparsers.add_parser("sealer", help="run the sealer service", description="The sealer service.")
    sealer_sub = sealer.add_subparsers(dest="sealer_command", metavar="COMMAND", required=True)
    sealer.set_defaults(func=lambda args: _print_help(sealer))
    _add_serve(sealer_sub)
    _add_keys(sealer_sub)


def _add_seal(subparsers) -> None:
    seal = subparsers.add_parser(
        "seal",
        help="seal a Secret manifest into a SealedSecret",
        description="Read a Kubernetes Secret (YAML or JSON, data and/or stringData) and print a "
        "bitnami.com/v1alpha1 SealedSecret that only the sealer can open. Flags follow kubeseal.",
        epilog=SEAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seal.add_argument(
        "-f", "--file", default="-", metavar="FILE", help="Secret (or SealedSecret) manifest (default: stdin)"
    )
    seal.add_argument(
        "-o", "--format", choices=("yaml", "json"), default="yaml", help="output format (default: yaml)"
    )
    seal.add_argument(
        "--scope",
        choices=("strict", "namespace-wide", "cluster-wide"),
        help="where the value may be unsealed (default: from the Secret's annotations, else strict)",
    )
    seal.add_argument("-n", "--namespace", help="namespace to seal for when the Secret has none (and --raw)")
    seal.add_argument("--name", help="--raw: the name the Secret will have")
    seal.add_argument(
        "--cert",
        action="append",
        metavar="FILE|URL",
        help="sealer certificate: a PEM file or an http(s) URL such as http://sealer:8080/v1/cert.pem; "
        "repeat for several domains",
    )
    seal.add_argument("--sealer", metavar="HOST:PORT", help="fetch the certificate from this sealer (mTLS)")
    seal.add_argument(
        "--domain",
        action="append",
        default=[],
        metavar="D[,D...]",
        help="key domain(s) to seal for; several give one SealedSecret per domain (default: the sealer's)",
    )
    seal.add_argument("--tls-ca", type=pathlib.Path, metavar="FILE", help="CA bundle that signs the sealer")
    seal.add_argument(
        "--tls-cert", type=pathlib.Path, metavar="FILE", help="client certificate for mutual TLS"
    )
    seal.add_argument(
        "--tls-key", type=pathlib.Path, metavar="FILE", help="client private key for mutual TLS"
    )
    seal.add_argument("--tls-server-name", metavar="NAME", help="name to expect in the sealer's certificate")
    seal.add_argument(
        "--timeout", type=duration_type("--timeout"), default=10.0, metavar="DURATION", help="RPC timeout (default: 10s)"
    )
    _add_seal_modes(seal)
    seal.set_defaults(func=seal_command)


def _add_seal_modes(seal) -> None:
    """What ``skerry seal`` does besides sealing: one mode at a time, and the flags each mode takes."""
    mode = seal.add_mutually_exclusive_group()
    mode.add_argument("--fetch-cert", action="store_true", help="print the sealer's certificate (PEM) and exit")
    mode.add_argument("--raw", action="store_true", help="seal one value (--from-file or stdin); print it")
    mode.add_argument(
        "--merge-into", type=pathlib.Path, metavar="FILE", help="add/replace the input's items in this SealedSecret"
    )
    mode.add_argument("--validate", action="store_true", help="ask the sealer whether the SealedSecret opens")
    mode.add_argument(
        "--re-encrypt", action="store_true", help="re-seal SealedSecrets with the sealer's newest key"
    )
    mode.add_argument(
        "--recovery-unseal", action="store_true", help="open SealedSecrets offline with private keys"
    )
    seal.add_argument("--from-file", type=pathlib.Path, metavar="FILE", help="--raw: the value to seal")
    seal.add_argument(
        "--in-place",
        nargs="+",
        type=pathlib.Path,
        metavar="PATH",
        help="--re-encrypt: rewrite every SealedSecret in these files/directories (a whole repo)",
    )
    seal.add_argument(
        "--recovery-private-key",
        action="append",
        default=[],
        metavar="FILE[,FILE]",
        help="PEM private key, Skerry key directory or key backup (repeatable)",
    )
    seal.add_argument(
        "--kek-file", type=pathlib.Path, metavar="FILE", help="key-encryption key of encrypted keys/backups"
    )


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


def _fail(command: str, message: str) -> int:
    print(f"{command}: error: {message}", file=sys.stderr)
    return 1


def _read_bytes(path: str | pathlib.Path) -> bytes:
    """A file or stdin, refused past ``seal.MAX_MANIFEST_BYTES`` without reading it whole."""
    from skerry.core import files
    from skerry.core.errors import InvalidInput
    from skerry.sealer import seal

    source = "stdin" if path == "-" else str(path)
    try:
        stdin = getattr(sys.stdin, "buffer", sys.stdin)
        return files.read_bounded(stdin if path == "-" else pathlib.Path(path), seal.MAX_MANIFEST_BYTES, source)
    except InvalidInput as e:
        raise _InputError(str(e)) from None


def _read_input(path: str | pathlib.Path) -> tuple[str, str]:
    source = "stdin" if path == "-" else str(path)
    try:
        return _read_bytes(path).decode("utf-8"), source
    except UnicodeDecodeError:
        raise _InputError(f"{source}: not UTF-8 text") from None


class _InputError(Exception):
    pass


def seal_command(args: argparse.Namespace) -> int:
    from skerry.core.errors import SkerryError

    try:
        return _seal(args)
    except (SkerryError, _InputError) as e:
        return _fail("skerry seal", str(e))
    except KeyboardInterrupt:
        return 130


def _split(values) -> list[str]:
    return [v.strip() for item in values or [] for v in str(item).split(",") if v.strip()]


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _tls_files(args: argparse.Namespace):
    from skerry.core.tls import TlsFiles

    missing = [
        f for f, v in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)) if not v
    ]
    if missing:
        raise _InputError(f"--sealer needs mutual TLS: also give {' '.join(missing)}")
    return TlsFiles(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)


def _certificates(args: argparse.Namespace) -> list:
    """The sealing certificate per requested domain (one, with no --domain)."""
    from skerry.core.errors import InvalidInput
    from skerry.core.files import read_bounded
    from skerry.sealer import seal

    domains = _split(args.domain)
    if args.cert and args.sealer:
        raise _InputError("give either --cert or --sealer, not both")
    if args.sealer:
        files = _tls_files(args)
        return [
            seal.fetch_certificate(args.sealer, files, domain=d, server_name=args.tls_server_name, timeout=args.timeout)
            for d in (domains or [""])
        ]
    if not args.cert:
        raise _InputError("give --cert FILE|URL or --sealer HOST:PORT (with --tls-ca/--tls-cert/--tls-key)")
    urls = [c for c in args.cert if _is_url(c)]
    files = [c for c in args.cert if not _is_url(c)]
    certs = []
    for url in urls:
        for d in domains or [""]:
            certs.append(seal.fetch_certificate_url(url, domain=d, ca_file=args.tls_ca, timeout=args.timeout))
    for path in files:
        try:
            pem = read_bounded(pathlib.Path(path), seal.MAX_CERT_BYTES, f"certificate {path}")
        except InvalidInput as e:
            raise _InputError(str(e)) from None
        certs.append(seal.load_certificate(pem, str(path)))
    if domains and files:
        # Certificate files name their domain (subject OU); keep the ones asked for, refuse gaps.
        by_domain = {c.domain: c for c in certs}
        missing = [d for d in domains if d not in by_domain]
        if missing:
            raise _InputError(f"no --cert given for domain(s) {', '.join(missing)}")
        certs = [by_domain[d] for d in domains]
    if len({c.key_id for c in certs}) != len(certs):
        raise _InputError("the same certificate was given twice")
    return certs


def _read_sealed(args: argparse.Namespace) -> tuple[list[dict], str]:
    from skerry.sealer import seal

    text, source = _read_input(args.file)
    return seal.parse_sealed(text, source), source


def _seal(args: argparse.Namespace) -> int:
    from skerry.sealer import seal

    if args.recovery_unseal:
        return _recovery_unseal(args)
    if args.re_encrypt or args.validate:
        return _via_sealer(args)
    if args.in_place:
        raise _InputError("--in-place goes with --re-encrypt")
    certs = _certificates(args)
    if args.fetch_cert:
        if len(certs) != 1:
            raise _InputError("--fetch-cert prints one certificate: give at most one --domain")
        sys.stdout.write(certs[0].pem.decode("ascii"))
        return 0
    if args.raw:
        if len(certs) != 1:
            raise _InputError("--raw seals for one domain")
        value = _read_bytes(args.from_file if args.from_file is not None else "-")
        sys.stdout.write(
            seal.seal_raw(
                value, certs[0], scope=args.scope or "strict", namespace=args.namespace or "", name=args.name or ""
            )
            + "\n"
        )
        return 0
    if args.name:
        raise _InputError("--name goes with --raw (a manifest names itself)")
    text, source = _read_input(args.file)
    secret = seal.parse_manifest(text, source)
    if args.merge_into is not None:
        if len(certs) != 1:
            raise _InputError("--merge-into seals for one domain")
        target_text, _ = _read_input(args.merge_into)
        (target, *rest) = seal.parse_sealed(target_text, str(args.merge_into))
        if rest:
            raise _InputError(f"{args.merge_into}: holds several SealedSecrets; merge into one")
        merged = seal.merge_into(target, secret, certs[0], source)
        fmt = "json" if target_text.lstrip().startswith("{") else "yaml"
        _write_file(args.merge_into, seal.render(merged, fmt))
        return 0
    sealed = [
        seal.seal_secret(secret, cert, scope=args.scope, namespace=args.namespace, source=source) for cert in certs
    ]
    sys.stdout.write(seal.render_many(sealed, args.format))
    return 0


def _write_file(path: pathlib.Path, text: str) -> None:
    import os

    tmp = path.with_name(f".{path.name}.skerry-tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise _InputError(f"cannot write {path}: {e.strerror}") from None


def _recovery_unseal(args: argparse.Namespace) -> int:
    from skerry.sealer import seal
    from skerry.sealer.keys import load_kek

    kek = load_kek(path=args.kek_file) if args.kek_file else None
    keys = seal.load_private_keys([pathlib.Path(p) for p in _split(args.recovery_private_key)], kek=kek)
    docs, source = _read_sealed(args)
    secrets = [seal.recovery_unseal(d, keys, source) for d in docs]
    sys.stdout.write(seal.render_many(secrets, args.format))
    return 0


def _sealed_files(paths: list[pathlib.Path]) -> list[pathlib.Path]:
    out: list[pathlib.Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(
                f for f in sorted(p.rglob("*")) if f.suffix in (".yaml", ".yml", ".json") and ".git" not in f.parts
            )
        else:
            out.append(p)
    return out


def _via_sealer(args: argparse.Namespace) -> int:
    """--validate and --re-encrypt: the sealer opens (and re-seals) the values; plaintext stays there."""
    from skerry.core.client import secure_channel
    from skerry.sealer import seal

    if not args.sealer:
        raise _InputError("--validate and --re-encrypt need --sealer HOST:PORT with an operator identity")
    files = _tls_files(args)
    domains = _split(args.domain)
    if len(domains) > 1:
        raise _InputError("--validate/--re-encrypt take at most one --domain (the default for unannotated ones)")
    domain = domains[0] if domains else ""
    channel = secure_channel(args.sealer, files, server_name=args.tls_server_name)
    try:
        if args.in_place:
            if not args.re_encrypt:
                raise _InputError("--in-place goes with --re-encrypt")
            return _re_encrypt_in_place(args, channel, files, domain)
        docs, source = _read_sealed(args)
        out = [
            seal.re_encrypt(args.sealer, files, d, domain=domain, timeout=args.timeout, channel=channel) for d in docs
        ]
    finally:
        channel.close()
    if args.validate:
        for d in docs:
            ns, name, *_ = seal.sealed_identity(d, source)
            print(f"{ns}/{name}: valid (every item opens)", file=sys.stderr)
        return 0
    sys.stdout.write(seal.render_many(out, args.format))
    return 0


def _re_encrypt_in_place(args, channel, files, domain: str) -> int:
    from skerry.core import documents, sealedsecret
    from skerry.sealer import seal

    changed = failed = 0
    for path in _sealed_files(args.in_place):
        try:
            text, _ = _read_input(path)
        except _InputError:
            continue
        if sealedsecret.KIND not in text:
            continue
        try:
            docs = seal.parse_documents(text, str(path))
        except Exception:  # noqa: BLE001 - not a manifest we can rewrite; leave it alone
            continue
        if not any(isinstance(d, dict) and sealedsecret.is_sealed_secret(d) for d in docs):
            continue
        new_docs = []
        for d in docs:
            if isinstance(d, dict) and sealedsecret.is_sealed_secret(d):
                try:
                    d = seal.re_encrypt(args.sealer, files, d, domain=domain, timeout=args.timeout, channel=channel)
                except Exception as e:  # noqa: BLE001 - report per file, keep the file as it was
                    print(f"skerry seal: {path}: {e}", file=sys.stderr)
                    failed += 1
                    break
            new_docs.append(d)
        else:
            if text.lstrip().startswith("{") and len(new_docs) == 1:
                out = seal.render(new_docs[0], "json")
            else:
                out = documents.dump_yaml_all(new_docs, allow_unicode=False, width=1 << 20)
            _write_file(path, out)
            changed += 1
            print(f"re-encrypted {path}", file=sys.stderr)
    print(f"{changed} file(s) re-encrypted, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def keys_command(args: argparse.Namespace) -> int:
    from skerry.core.errors import SkerryError

    try:
        return _keys(args)
    except (SkerryError, _InputError) as e:
        return _fail(f"skerry sealer keys {args.keys_command}", str(e))
    except KeyboardInterrupt:
        return 130


def _keys(args: argparse.Namespace) -> int:
    import json
    import os

    from skerry.core import logging as skerry_logging
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
            raise _InputError(
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
        try:
            with open(args.input, "rb") as f:
                raw = f.read(retire_mod.MAX_BACKUP_BYTES + 1)
        except OSError as e:
            raise _InputError(f"cannot read {args.input}: {e.strerror}") from None
        if len(raw) > retire_mod.MAX_BACKUP_BYTES:
            raise _InputError(f"{args.input} is over {retire_mod.MAX_BACKUP_BYTES} bytes")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise _InputError(f"{args.input}: not a JSON key backup") from None
        restored = registry.restore_document(doc, kek=kek)
        total = sum(len(v) for v in restored.values())
        print(f"restored {total} key(s)" + "".join(f"; {d}: {len(v)}" for d, v in restored.items()), file=sys.stderr)
        return 0
    raise _InputError(f"unknown keys action {args.keys_command}")


def serve_command(args: argparse.Namespace) -> int:
    import asyncio

    from skerry.cli.errors import with_reason
    from skerry.core import logging as skerry_logging
    from skerry.core.errors import SkerryError
    from skerry.sealer.app import run

    try:
        config = SealerConfig.from_env(None, **settings.flag_values(args, SealerConfig))
        skerry_logging.configure(config.log_level)
        asyncio.run(run(config))
    except SkerryError as e:
        return _fail("skerry sealer serve", with_reason(e))
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skerry", description="Skerry sealer commands.")
    add_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
