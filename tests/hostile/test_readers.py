"""Every reader of outside YAML/JSON against the hostile inputs: an alias bomb of under 1 KiB, 50,000-deep
nesting, NaN, lone surrogates, invalid and valid non-ASCII. Each ends in the reader's documented error (or
is accepted, where the input is valid), with a message under 1 KiB, within 2 s and 50 MB of allocation."""

from __future__ import annotations

import base64
import pathlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from tuf.api.metadata import Metadata
from tuf.api.serialization import DeserializationError

from skerry.agent import diff
from skerry.agent.reconcile.inventory import Inventory, InventoryCorrupt
from skerry.core import documents, report, revocation, trust
from skerry.core.bundle import Bundle
from skerry.core.errors import ConfigError, InvalidInput, PermissionDenied, RenderError, VerificationError
from skerry.hub.enrollment.tokens import TokenIssuer, UsedTokens
from skerry.hub.fleet import parse_fleet
from skerry.hub.promotion.freight import read_images
from skerry.hub.render.engine import parse_documents, render_plain
from skerry.hub.state import open_state
from skerry.sealer import seal
from skerry.sealer.authz import ClusterDomains
from skerry.sealer.bundle_trust import TufBundleTrust

from .hostile_inputs import HOSTILE, MAX_GROWTH, MAX_MESSAGE, MAX_SECONDS, alias_bomb, run

_EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _signed_report(data: bytes):
    import datetime as dt

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oslo-prod")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(_EC_KEY.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(_EC_KEY, hashes.SHA256()))
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = cert.public_bytes(Encoding.PEM)
    return lambda: report.verify(data, _EC_KEY.sign(data, ec.ECDSA(hashes.SHA256())), pem)


def _file_reader(tmp: pathlib.Path, name: str, read):
    def reader(data: bytes):
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return read(path)

    return reader


def _import_used_tokens(path: pathlib.Path) -> None:
    """An older hub's spent-token file, taken into the hub state at the first start after an upgrade."""
    state = open_state("", state_dir=path.parent)
    try:
        UsedTokens(state).import_previous(path.parent)
    finally:
        state.close()


def readers(tmp: pathlib.Path) -> dict[str, tuple]:
    """name -> (reader taking bytes, the error it documents)."""
    return {
        "fleet file": (parse_fleet, ConfigError),
        "kustomization (promotion)": (lambda d: read_images(d, "k/kustomization.yaml"), InvalidInput),
        "plain YAML directory": (_file_reader(tmp / "plain-yaml", "a.yaml",
                                              lambda p: render_plain(p.parent, where="plain")), RenderError),
        "plain JSON file": (_file_reader(tmp / "plain-json", "a.json",
                                         lambda p: render_plain(p.parent, where="plain")), RenderError),
        "render tool output": (lambda d: parse_documents(d, "overlay (kustomize output)"), RenderError),
        "seal: Secret manifest": (lambda d: seal.parse_manifest(d, "stdin"), InvalidInput),
        "seal: SealedSecret manifests": (lambda d: seal.parse_sealed(d, "sealed.yaml"), InvalidInput),
        "bundle bytes": (Bundle.decode, InvalidInput),
        "TUF metadata (python-tuf)": (Metadata.from_bytes, DeserializationError),
        "trust evidence": (trust.decode_evidence, InvalidInput),
        "signed report": (lambda d: _signed_report(d)(), VerificationError),
        "inventory ConfigMap": (Inventory.decode, InventoryCorrupt),
        "skerry diff input": (diff.load_objects, InvalidInput),
        "enrollment token payload": (lambda d: TokenIssuer(b"k" * 32).check(
            "skt1." + base64.urlsafe_b64encode(d).decode().rstrip("=") + ".mac"), PermissionDenied),
        "used-tokens file (import)": (_file_reader(tmp / "tokens", "used-tokens.json", _import_used_tokens),
                                      ConfigError),
        "revocation list": (lambda d: revocation.RevokedSet.from_bytes(d, "revocations.json"), ConfigError),
        "sealer release state": (_file_reader(tmp / "sealer-state", "release.json",
                                              lambda p: TufBundleTrust._last(p.parent)), VerificationError),
        "sealer cluster-domain map": (_file_reader(tmp / "domains", "domains.yaml", ClusterDomains.from_file),
                                      ConfigError),
    }


READERS = list(readers(pathlib.Path("/nonexistent")))


@pytest.mark.parametrize("hostile", list(HOSTILE))
@pytest.mark.parametrize("reader_name", READERS)
def test_every_reader_refuses_hostile_input_in_its_documented_error(reader_name, hostile, tmp_path):
    reader, documented = readers(tmp_path)[reader_name]
    outcome = run(reader, HOSTILE[hostile])
    if outcome.error is not None:
        assert isinstance(outcome.error, documented), repr(outcome.error)[:2000]
        assert len(str(outcome.error)) < MAX_MESSAGE, str(outcome.error)[:2000]
        assert "\n" not in str(outcome.error).strip()
    else:  # accepted: only valid input may be
        # YAML reads NaN unquoted as the string "NaN"; valid non-ASCII and a long key are valid
        assert hostile in ("non-ascii", "huge-key", "nan-json"), f"{reader_name} accepted {hostile}"
    assert outcome.seconds < MAX_SECONDS
    assert outcome.growth < MAX_GROWTH


def test_the_alias_bomb_is_under_a_kib_and_refused_as_such():
    assert len(alias_bomb()) < 1024
    with pytest.raises(documents.BadDocument) as e:
        documents.load_yaml(alias_bomb())
    assert e.value.reason == "AliasBudget"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"[" * 50_000 + b"]" * 50_000, "TooDeep"),
        (b"a: &a [*a]", "AliasBudget"),
        (b"v: .nan", "NotJson"),
        (b'v: "\\ud800"', "BadEncoding"),
        (b"v: \xff", "BadEncoding"),
        (b"a: 1\na: 2", "InvalidYAML"),
    ],
)
def test_each_yaml_refusal_names_its_reason(text, reason):
    with pytest.raises(documents.BadDocument) as e:
        documents.load_yaml(text)
    assert e.value.reason == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"[" * 50_000 + b"]" * 50_000, "TooDeep"),
        (b"[" * 201 + b"]" * 201, "TooDeep"),
        (b'{"v": NaN}', "NotJson"),
        (b'{"v": -Infinity}', "NotJson"),
        (b'{"v": "\\udfff"}', "BadEncoding"),
        (b'{"\\ud800": 1}', "BadEncoding"),
        (b'{"v": "\xff"}', "BadEncoding"),
        (b"{" * 2, "InvalidJSON"),
        (b"1" * 100_001, "TooLarge"),
    ],
)
def test_each_json_refusal_names_its_reason(text, reason):
    with pytest.raises(documents.BadDocument) as e:
        documents.load_json(text, max_bytes=100_000)
    assert e.value.reason == reason


def test_a_legitimate_document_may_reuse_anchors_and_nest_deeply():
    anchors = b"base: &b {image: web, env: [a, b, c]}\n" + b"".join(b"x%d: *b\n" % i for i in range(500))
    assert len(documents.load_yaml(anchors)) == 501
    nested = b"a:" + b"".join(b"\n" + b"  " * i + b"a:" for i in range(1, 150)) + b" 1\n"
    assert documents.load_yaml(nested)["a"]["a"]["a"]


def test_a_bare_equals_sign_in_a_crd_enum_is_a_string():
    crd = b"spec:\n  enum: [=, '!=', <, '>']\n  default: =\n"
    assert documents.load_yaml(crd) == {"spec": {"enum": ["=", "!=", "<", ">"], "default": "="}}


def test_yaml_written_back_carries_no_anchors():
    doc = documents.load_yaml(b"metadata:\n  annotations: &a {x: '1'}\n  labels: *a\n")
    out = documents.dump_yaml(doc)
    assert "&" not in out and "*" not in out


def test_clip_bounds_what_a_value_adds_to_a_message():
    value = documents.load_yaml(alias_bomb(4))  # shared 9**3 leaves: fine to load, long to print
    assert len(documents.clip_repr(value)) < 400
    assert len(documents.clip("x" * 10_000)) < 300
