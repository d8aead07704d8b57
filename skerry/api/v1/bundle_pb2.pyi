from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignedBundle(_message.Message):
    __slots__ = ("cluster", "version", "digest", "bundle", "metadata", "root_version")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ROOT_VERSION_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    version: int
    digest: str
    bundle: bytes
    metadata: _containers.RepeatedCompositeFieldContainer[MetadataFile]
    root_version: int
    def __init__(self, cluster: _Optional[str] = ..., version: _Optional[int] = ..., digest: _Optional[str] = ..., bundle: _Optional[bytes] = ..., metadata: _Optional[_Iterable[_Union[MetadataFile, _Mapping]]] = ..., root_version: _Optional[int] = ...) -> None: ...

class MetadataFile(_message.Message):
    __slots__ = ("path", "data")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    path: str
    data: bytes
    def __init__(self, path: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...
