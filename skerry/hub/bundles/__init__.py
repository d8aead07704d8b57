"""One bundle per cluster: building it from rendered objects, signing it, serving the current one."""
