"""A plain-HTTP endpoint that serves only the sealer's public sealing certificates.

``kubeseal --cert https://...`` and ``skerry seal --cert URL`` fetch the
certificate over plain HTTP(S), as the upstream controller's
``/v1/cert.pem`` serves it. Sealing is a write-only operation and the
certificate is public, so this endpoint needs no client identity; it serves
nothing else (no unseal, no key material, no listing beyond domain names):

    GET /v1/cert.pem               the default domain's sealing certificate (PEM)
    GET /v1/cert.pem?domain=eu-1   that domain's sealing certificate
    anything else                  404 / 405

Response headers carry ``X-Skerry-Key-Id`` and ``X-Skerry-Domain``. It runs
on the standard library's threading HTTP server in a daemon thread. Every
refusal - the handler's own (by its reason) and the standard library's
(a malformed or oversize request line or header, by its status) - goes
through one hook, ``count_refusal``: the sealer's ``skerry_refusals_total``.
"""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from collections.abc import Callable

from skerry.core.errors import SkerryError
from skerry.core.metrics import HTTP_REFUSAL_REASONS
from skerry.sealer.keys import KeyRegistry

CERT_PATH = "/v1/cert.pem"
# A client that does not finish its request line in this time is dropped.
REQUEST_TIMEOUT_SECONDS = 5.0
MAX_QUERY_CHARS = 256


class CertificateServer:
    def __init__(self, registry: KeyRegistry, host: str, port: int, *,
                 count_refusal: Callable[[str], None] | None = None):
        registry_ref = registry
        count = count_refusal or (lambda reason: None)

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT_SECONDS
            server_version = "skerry-sealer"
            sys_version = ""

            def log_message(self, format, *args):  # noqa: A002 - stdlib signature; keep stderr quiet
                return

            def do_GET(self):  # noqa: N802 - stdlib name
                url = urllib.parse.urlsplit(self.path)
                if url.path != CERT_PATH or len(url.query) > MAX_QUERY_CHARS:
                    self._refuse(404, b"not found\n", "TooLarge" if url.path == CERT_PATH else "NotFound")
                    return
                domain = (urllib.parse.parse_qs(url.query).get("domain") or [""])[0]
                try:
                    key = registry_ref.sealing_key(domain)
                except SkerryError as e:
                    self._refuse(404, f"{e}\n".encode(), e.reason)
                    return
                self._send(
                    200,
                    key.cert_pem,
                    "application/x-pem-file",
                    {"X-Skerry-Key-Id": key.key_id, "X-Skerry-Domain": key.domain},
                )

            def do_POST(self):  # noqa: N802
                self._refuse(405, b"only GET\n", "MethodNotAllowed")

            def send_error(self, code, message=None, explain=None):
                # The standard library's own refusals (a malformed request line, a header too long, ...).
                if code in HTTP_REFUSAL_REASONS:
                    count(HTTP_REFUSAL_REASONS[code])
                super().send_error(code, message, explain)

            def _refuse(self, code: int, body: bytes, reason: str) -> None:
                count(reason)
                self._send(code, body, "text/plain")

            do_PUT = do_DELETE = do_POST  # noqa: N815

            def _send(self, code: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-cache")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self._httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="sealer-cert-http", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def start(self) -> int:
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
