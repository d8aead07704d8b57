"""Request lines of a live sealer appear only when the process set logging up, whatever tests ran before."""

from __future__ import annotations

import io
import json

import structlog

from skerry.core import logging as skerry_logging

from .helpers import run_cli


def fetch_cert(sealer, mtls, capsys) -> tuple[int, str, str]:
    files = mtls.operator
    tls = ["--tls-ca", str(files.ca), "--tls-cert", str(files.cert), "--tls-key", str(files.key)]
    return run_cli(["seal", "--fetch-cert", "--sealer", sealer.address, *tls], capsys)


def test_a_structlog_set_up_put_back_by_hand_keeps_the_output_clean(sealer, mtls, capsys):
    with structlog.testing.capture_logs():  # any structlog.configure, even one restoring the old set-up...
        pass
    structlog.configure(**structlog.get_config())
    code, out, err = fetch_cert(sealer, mtls, capsys)  # ...must not put request lines into the command's stdout
    assert (code, out.encode(), err) == (0, sealer.app.registry.sealing_key().cert_pem, "")


def test_a_configured_process_logs_each_request(sealer, mtls, capsys):
    logged = io.StringIO()
    skerry_logging.configure("info", json_output=True, stream=logged)
    code, out, _ = fetch_cert(sealer, mtls, capsys)
    assert (code, out.encode()) == (0, sealer.app.registry.sealing_key().cert_pem)
    requests = [e for e in map(json.loads, logged.getvalue().splitlines()) if e["event"] == "request"]
    assert [(e["method"], e["code"]) for e in requests] == [("/skerry.api.v1.SealerService/GetCertificate", "OK")]
