"""The process's open-file limit: raised to what the system allows at start, read by what bounds connections.

Every peer connection is a file descriptor. A hub holds one per agent stream, a fleet simulator one per
simulated agent; past the soft limit (``RLIMIT_NOFILE``) every ``open`` fails with EMFILE, and then not
only new connections but a database connection, a trust file, a log file fail too. A process that holds
many connections raises its soft limit to the hard one at start (``raise_open_files``: an unprivileged
process may, up to the hard limit, and no further), and whatever admits connections bounds them below
the limit it then reads (``open_file_limit``; the hub's ``skerry.hub.admission``).
"""

from __future__ import annotations

import resource


def open_file_limit() -> int | None:
    """The soft limit on open files in force now; None when there is none (``RLIM_INFINITY``)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_files() -> int | None:
    """Lift the soft open-file limit to the hard limit (never lowers it); the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # a hard limit the kernel will not give (above fs.nr_open): keep the soft one
            pass
    return open_file_limit()
