"""Transport tests take the fleet repository and the real kustomize from tests/conftest.py; the hubs they
feed are in hubs.py."""
