from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class FetchRequest(_message.Message):
    __slots__ = ("path", "trusted_timestamp")
    PATH_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    path: str
    trusted_timestamp: int
    def __init__(self, path: _Optional[str] = ..., trusted_timestamp: _Optional[int] = ...) -> None: ...

class FetchChunk(_message.Message):
    __slots__ = ("data", "total_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    total_size: int
    def __init__(self, data: _Optional[bytes] = ..., total_size: _Optional[int] = ...) -> None: ...

class GetReleaseProposalRequest(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    def __init__(self, cluster: _Optional[str] = ...) -> None: ...

class ReleaseProposal(_message.Message):
    __slots__ = ("cluster", "environment", "role", "revision", "digest", "metadata", "signatures", "threshold")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    environment: str
    role: str
    revision: str
    digest: str
    metadata: bytes
    signatures: int
    threshold: int
    def __init__(self, cluster: _Optional[str] = ..., environment: _Optional[str] = ..., role: _Optional[str] = ..., revision: _Optional[str] = ..., digest: _Optional[str] = ..., metadata: _Optional[bytes] = ..., signatures: _Optional[int] = ..., threshold: _Optional[int] = ...) -> None: ...

class SubmitReleaseRequest(_message.Message):
    __slots__ = ("role", "metadata")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    role: str
    metadata: bytes
    def __init__(self, role: _Optional[str] = ..., metadata: _Optional[bytes] = ...) -> None: ...

class SubmitReleaseResponse(_message.Message):
    __slots__ = ("version", "signatures", "threshold", "published")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    version: int
    signatures: int
    threshold: int
    published: bool
    def __init__(self, version: _Optional[int] = ..., signatures: _Optional[int] = ..., threshold: _Optional[int] = ..., published: _Optional[bool] = ...) -> None: ...

class IssueNonceRequest(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    def __init__(self, cluster: _Optional[str] = ...) -> None: ...

class IssueNonceResponse(_message.Message):
    __slots__ = ("nonce", "counter")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    nonce: str
    counter: int
    def __init__(self, nonce: _Optional[str] = ..., counter: _Optional[int] = ...) -> None: ...

class SignedReport(_message.Message):
    __slots__ = ("report", "signature", "certificate")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    report: bytes
    signature: bytes
    certificate: bytes
    def __init__(self, report: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., certificate: _Optional[bytes] = ...) -> None: ...

class SubmitSignedReportResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    def __init__(self, accepted: _Optional[bool] = ...) -> None: ...

class GetAttestationRequest(_message.Message):
    __slots__ = ("cluster",)
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    def __init__(self, cluster: _Optional[str] = ...) -> None: ...
