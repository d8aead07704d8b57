"""The hub as a TUF repository: director (online keys) and release (offline/CI keys) roles."""
