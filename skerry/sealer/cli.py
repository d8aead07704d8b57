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

SEAL_EPILOG = """\
examples:
  skerry seal -f secret.yaml --cert sealer.crt > sealed.yaml
  kubectl create secret generic db --from-literal=password=s3cr3t --dry-run=client -o yaml \\
    | skerry seal --sealer sealer:7443 --tls-ca ca.crt --tls-cert me.crt --tls-key me.key
  skerry seal --fetch-cert --sealer sealer:7443 --tls-ca ca.crt --tls-cert me.crt --tls-key me.key
"""


def add_commands(subparsers) -> None:
    """Add ``seal`` and ``sealer`` (with ``serve``) to an argparse sub-parsers object."""
    seal = subparsers.add_parser(
        "seal",
        help="seal a Secret manifest into a SealedSecret",
        description="Read a Kubernetes Secret (YAML or JSON, data and/or stringData) and print a "
        "bitnami.com/v1alpha1 SealedSecret that only the sealer can open.",
        epilog=SEAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seal.add_argument(
        "-f", "--file", default="-", metavar="FILE", help="Secret manifest to seal (default: stdin)"
    )
    seal.add_argument(
        "--format", choices=("yaml", "json"), default="yaml", help="output format (default: yaml)"
    )
    seal.add_argument(
        "--scope",
        choices=("strict", "namespace-wide", "cluster-wide"),
        help="where the value may be unsealed (default: from the Secret's annotations, else strict)",
    )
    seal.add_argument("-n", "--namespace", help="namespace to seal for when the Secret has none")
    seal.add_argument(
        "--cert", type=pathlib.Path, metavar="FILE", help="sealer certificate (PEM); no network needed"
    )
    seal.add_argument("--sealer", metavar="HOST:PORT", help="fetch the certificate from this sealer")
    seal.add_argument("--domain", default="", help="key domain to seal for (default: the sealer's default)")
    seal.add_argument("--tls-ca", type=pathlib.Path, metavar="FILE", help="CA bundle that signs the sealer")
    seal.add_argument(
        "--tls-cert", type=pathlib.Path, metavar="FILE", help="client certificate for mutual TLS"
    )
    seal.add_argument(
        "--tls-key", type=pathlib.Path, metavar="FILE", help="client private key for mutual TLS"
    )
    seal.add_argument("--tls-server-name", metavar="NAME", help="name to expect in the sealer's certificate")
    seal.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="RPC timeout (default: 10)"
    )
    seal.add_argument(
        "--fetch-cert", action="store_true", help="print the sealer's certificate (PEM) and exit"
    )
    seal.set_defaults(func=seal_command)

    sealer = subparsers.add_parser("sealer", help="run the sealer service", description="The sealer service.")
    sealer_sub = sealer.add_subparsers(dest="sealer_command", metavar="COMMAND", required=True)
    sealer.set_defaults(func=lambda args: _print_help(sealer))
    serve = sealer_sub.add_parser(
        "serve",
        help="serve GetCertificate and Unseal over mutual TLS",
        description="Serve the sealer. Every flag falls back to its SKERRY_SEALER_* environment variable.",
    )
    serve.add_argument("--listen", metavar="HOST:PORT", help="listen address (default: 127.0.0.1:7443)")
    serve.add_argument("--tls-ca", type=pathlib.Path, metavar="FILE", help="CA bundle that signs clients")
    serve.add_argument("--tls-cert", type=pathlib.Path, metavar="FILE", help="server certificate")
    serve.add_argument("--tls-key", type=pathlib.Path, metavar="FILE", help="server private key")
    serve.add_argument("--keys-dir", type=pathlib.Path, metavar="DIR", help="sealing keys directory")
    serve.add_argument("--domains", metavar="LIST", help="comma-separated key domains (default: default)")
    serve.add_argument(
        "--ready-file", type=pathlib.Path, metavar="FILE", help='write {"port": N} here once serving'
    )
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="default: info")
    serve.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve /metrics, /healthz, /readyz here")
    serve.set_defaults(func=serve_command)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _fail(command: str, message: str) -> int:
    print(f"{command}: error: {message}", file=sys.stderr)
    return 1


def _read_input(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "stdin"
    try:
        return pathlib.Path(path).read_text(encoding="utf-8"), path
    except UnicodeDecodeError:
        raise _InputError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise _InputError(f"cannot read {path}: {e.strerror}") from None


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
    except Exception as e:  # noqa: BLE001 - one line, never a traceback; messages carry no values
        return _fail("skerry seal", f"unexpected {type(e).__name__}: {e}")


def _seal(args: argparse.Namespace) -> int:
    from skerry.core.tls import TlsFiles
    from skerry.sealer import seal

    if args.cert and args.sealer:
        raise _InputError("give either --cert or --sealer, not both")
    if args.cert:
        if args.fetch_cert:
            raise _InputError("--fetch-cert needs --sealer, not --cert")
        try:
            pem = args.cert.read_bytes()
        except OSError as e:
            raise _InputError(f"cannot read certificate {args.cert}: {e.strerror}") from None
        cert = seal.load_certificate(pem, str(args.cert))
    elif args.sealer:
        missing = [
            f
            for f, v in (
                ("--tls-ca", args.tls_ca),
                ("--tls-cert", args.tls_cert),
                ("--tls-key", args.tls_key),
            )
            if not v
        ]
        if missing:
            raise _InputError(f"--sealer needs mutual TLS: also give {' '.join(missing)}")
        files = TlsFiles(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
        cert = seal.fetch_certificate(
            args.sealer, files, domain=args.domain, server_name=args.tls_server_name, timeout=args.timeout
        )
    else:
        raise _InputError("give --cert FILE or --sealer HOST:PORT (with --tls-ca/--tls-cert/--tls-key)")

    if args.fetch_cert:
        sys.stdout.write(cert.pem.decode("ascii"))
        return 0
    text, source = _read_input(args.file)
    secret = seal.parse_manifest(text, source)
    sealed = seal.seal_secret(secret, cert, scope=args.scope, namespace=args.namespace, source=source)
    sys.stdout.write(seal.render(sealed, args.format))
    return 0


def serve_command(args: argparse.Namespace) -> int:
    import asyncio

    from skerry.core import logging as skerry_logging
    from skerry.core.errors import SkerryError
    from skerry.sealer.app import run
    from skerry.sealer.config import SealerConfig

    try:
        config = SealerConfig.from_env(
            None,
            listen=args.listen,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            keys_dir=args.keys_dir,
            domains=args.domains,
            ready_file=args.ready_file,
            log_level=args.log_level,
            metrics_listen=args.metrics_listen,
        )
        skerry_logging.configure(config.log_level)
        asyncio.run(run(config))
    except SkerryError as e:
        return _fail("skerry sealer serve", str(e))
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - e.g. the port is taken; one line, never a traceback
        return _fail("skerry sealer serve", f"{type(e).__name__}: {e}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skerry", description="Skerry sealer commands.")
    add_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
