"""Test harnesses Skerry ships for its own tests and for anyone testing against Skerry (like kopf.testing)."""
