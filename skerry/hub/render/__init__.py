"""Turning a directory of the repository into Kubernetes objects."""
