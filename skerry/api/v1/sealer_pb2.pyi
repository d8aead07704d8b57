from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetCertificateRequest(_message.Message):
    __slots__ = ("domain",)
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    domain: str
    def __init__(self, domain: _Optional[str] = ...) -> None: ...

class GetCertificateResponse(_message.Message):
    __slots__ = ("certificate_pem", "key_id", "domain")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    key_id: str
    domain: str
    def __init__(self, certificate_pem: _Optional[bytes] = ..., key_id: _Optional[str] = ..., domain: _Optional[str] = ...) -> None: ...

class UnsealRequest(_message.Message):
    __slots__ = ("namespace", "name", "scope", "encrypted_data", "domain", "key_hint")
    class EncryptedDataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_DATA_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    KEY_HINT_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    scope: str
    encrypted_data: _containers.ScalarMap[str, str]
    domain: str
    key_hint: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., scope: _Optional[str] = ..., encrypted_data: _Optional[_Mapping[str, str]] = ..., domain: _Optional[str] = ..., key_hint: _Optional[str] = ...) -> None: ...

class UnsealResponse(_message.Message):
    __slots__ = ("data", "key_ids")
    class DataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    DATA_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    data: _containers.ScalarMap[str, bytes]
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, data: _Optional[_Mapping[str, bytes]] = ..., key_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class UnsealBundleRequest(_message.Message):
    __slots__ = ("metadata", "bundle", "domain", "page_token")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    metadata: bytes
    bundle: bytes
    domain: str
    page_token: str
    def __init__(self, metadata: _Optional[bytes] = ..., bundle: _Optional[bytes] = ..., domain: _Optional[str] = ..., page_token: _Optional[str] = ...) -> None: ...

class UnsealedSecret(_message.Message):
    __slots__ = ("namespace", "name", "data", "error", "reason", "key_ids")
    class DataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    data: _containers.ScalarMap[str, bytes]
    error: str
    reason: str
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., data: _Optional[_Mapping[str, bytes]] = ..., error: _Optional[str] = ..., reason: _Optional[str] = ..., key_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class UnsealBundleResponse(_message.Message):
    __slots__ = ("secrets", "release", "next_page_token")
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[UnsealedSecret]
    release: int
    next_page_token: str
    def __init__(self, secrets: _Optional[_Iterable[_Union[UnsealedSecret, _Mapping]]] = ..., release: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReEncryptRequest(_message.Message):
    __slots__ = ("namespace", "name", "scope", "encrypted_data", "domain", "key_hint")
    class EncryptedDataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTED_DATA_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    KEY_HINT_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    scope: str
    encrypted_data: _containers.ScalarMap[str, str]
    domain: str
    key_hint: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., scope: _Optional[str] = ..., encrypted_data: _Optional[_Mapping[str, str]] = ..., domain: _Optional[str] = ..., key_hint: _Optional[str] = ...) -> None: ...

class ReEncryptResponse(_message.Message):
    __slots__ = ("encrypted_data", "key_id", "domain")
    class EncryptedDataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENCRYPTED_DATA_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    encrypted_data: _containers.ScalarMap[str, str]
    key_id: str
    domain: str
    def __init__(self, encrypted_data: _Optional[_Mapping[str, str]] = ..., key_id: _Optional[str] = ..., domain: _Optional[str] = ...) -> None: ...
