"""``skerry seal``: a Secret into a SealedSecret (kubeseal's flags), and the sealer's other client modes.

``add_commands`` plugs it into the top-level ``skerry`` parser. Heavy imports (grpc, cryptography) happen
inside the handlers so ``--help`` stays fast. A failure prints one line, ``skerry seal: error: ...``, and
exits 1; never a traceback.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from skerry.cli.parser import duration_type

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



def add_commands(subparsers) -> None:
    """Add ``seal`` to an argparse sub-parsers object."""
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
