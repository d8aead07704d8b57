"""Rendered objects against their Kubernetes schemas (the hub's check after the structural one).

Known schemas come from ``kubernetes-validate`` (the Kubernetes OpenAPI
schemas as JSON Schema, strict mode: unknown fields are errors, which
catches a misspelt ``replica:``). One validator is built per
(apiVersion, kind) and kept: the package's ``validate`` reloads the 5 MB
definitions file on every call (~13 ms an object; cached, ~0.3 ms). Kinds it
has no schema for (custom resources) are checked structurally only. The
schema version is ``SCHEMA_VERSION`` (the newest the package ships that is
not newer than the agents' API servers are expected to be).

Its own module, apart from ``validate``: jsonschema and the schema package cost
~0.1 s to import, which ``skerry render DIR`` (no schemas) should not pay.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

import jsonschema
from kubernetes_validate import utils
from referencing import Registry, Resource

SCHEMA_VERSION = "1.32.0"


class SchemaValidator:
    """JSON Schema validation through ``kubernetes-validate``'s schemas; validators cached per kind."""

    def __init__(self, version: str = SCHEMA_VERSION):
        self._utils = utils
        known = [v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(version)]
        self.version = known[-1] if known else utils.latest_version()
        self._dir = f"kubernetes-json-schema/v{self.version}-local-strict"
        self._validators: dict[tuple[str, str], Any] = {}
        self._definitions = None
        self._lock = threading.Lock()

    def _validator(self, api_version: str, kind: str):
        key = (api_version, kind)
        with self._lock:
            if key in self._validators:
                return self._validators[key]

            api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
            try:
                schema = self._utils.schema_contents(f"{self._dir}/{kind.lower()}-{api}.json", self.version)
            except (FileNotFoundError, OSError):
                schema = None
            except Exception:  # noqa: BLE001 - an unreadable schema file means: no schema for this kind
                schema = None
            validator = None
            if schema is not None:
                if self._definitions is None:
                    self._definitions = Resource.from_contents(
                        self._utils.schema_contents(f"{self._dir}/_definitions.json", self.version)
                    )
                registry = self._definitions @ (Resource.from_contents(schema) @ Registry())
                validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
            self._validators[key] = validator
            return validator

    def problem(self, obj: Mapping) -> str | None:
        validator = self._validator(str(obj["apiVersion"]), str(obj["kind"]))
        if validator is None:
            return None

        error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(object)"
        message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
        return f"{message} at {where} (Kubernetes {self.version} schema)"
