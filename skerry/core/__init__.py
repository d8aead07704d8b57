"""Code shared by every Skerry service; imports no service (see .importlinter)."""
