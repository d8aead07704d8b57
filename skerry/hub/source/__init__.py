"""Where the desired state comes from (Git today)."""
