from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SignedBundle(_message.Message):
    __slots__ = ("cluster", "version", "digest", "bundle", "number")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    version: int
    digest: str
    bundle: bytes
    number: int
    def __init__(self, cluster: _Optional[str] = ..., version: _Optional[int] = ..., digest: _Optional[str] = ..., bundle: _Optional[bytes] = ..., number: _Optional[int] = ...) -> None: ...
