"""Where a party's mutual-TLS material lives on disk, and reading it.

Apart from ``skerry.core.tls`` (which makes certificates and gRPC credentials and imports both
cryptography and grpc) so that a service's config, and with it the command line built from the config's
fields, names TLS files without loading either library.
"""

from __future__ import annotations

import dataclasses
import pathlib

from skerry.core.errors import ConfigError
from skerry.core.files import finish_pending


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """Paths to a CA bundle and this party's certificate and key."""

    ca: pathlib.Path
    cert: pathlib.Path
    key: pathlib.Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        try:  # a key + certificate swap (core.files.write_together) interrupted by a crash: complete it
            finish_pending([pathlib.Path(self.key), pathlib.Path(self.cert)])
        except OSError as e:
            raise ConfigError(f"cannot complete the pending swap of {self.key} and {self.cert}: {e.strerror}") from e
        out = []
        for what, path in (("CA certificate", self.ca), ("certificate", self.cert), ("private key", self.key)):
            try:
                out.append(pathlib.Path(path).read_bytes())
            except OSError as e:
                raise ConfigError(f"cannot read TLS {what} {path}: {e.strerror}") from e
        return out[0], out[1], out[2]
