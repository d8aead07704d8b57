"""The one error wrapper of the command surface: one line on stderr, a documented exit code.

Every command handler runs inside ``run``; whatever escapes it (a Skerry error, a gRPC error, a
missing file, a missing optional dependency, Ctrl-C, a closed stdout) becomes one line
``skerry COMMAND: error: MESSAGE`` and an exit code from ``ExitCode`` — never a traceback. The
table of codes is in the ``skerry.cli`` docstring (``skerry --help`` shows it too).
"""

from __future__ import annotations

import enum
import os
import sys


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # refused, failed, unreachable, gate not met; `skerry diff`: differences found
    USAGE = 2  # unknown command or flag, a bad value, a wrong combination of flags
    MISSING_EXTRA = 4  # the command needs an optional dependency group that is not installed
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    OUTPUT_CLOSED = 141  # stdout closed before the output was written, e.g. `| head` (128 + SIGPIPE)


# The optional dependency group (pip extra) that provides each third-party module a command may
# import lazily; tests/install checks this against pyproject.toml.
EXTRA_OF_MODULE = {
    "git": "hub",
    "ruamel": "hub",
    "aiohttp": "hub",
    "kubernetes_validate": "hub",
    "jsonschema": "hub",
    "referencing": "hub",
    "rich": "hub",
    "psycopg": "hub",
    "psycopg_pool": "hub",
    "kubernetes": "agent",
    "urllib3": "agent",
}


class UsageError(Exception):
    """A wrong combination of arguments found by a handler (exit 2), said in one line."""


def one_line(message: object) -> str:
    return " ".join(str(message).split())


def fail(command: str, message: object, code: int = ExitCode.FAILED) -> int:
    """Print ``COMMAND: error: MESSAGE`` on one line and return ``code``."""
    try:
        print(f"{command}: error: {one_line(message)}", file=sys.stderr, flush=True)
    except OSError:  # stderr closed too: nothing left to tell
        pass
    return int(code)


def _describe(error: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for an exception escaping a handler."""
    if isinstance(error, UsageError):
        return str(error), ExitCode.USAGE
    if isinstance(error, ModuleNotFoundError) and error.name:
        top = error.name.split(".")[0]
        extra = EXTRA_OF_MODULE.get(top)
        if extra is not None:
            return (f"needs the {extra} extra (Python module {top} is missing): "
                    f"pip install 'skerry[{extra}]'"), ExitCode.MISSING_EXTRA
        return f"Python module {error.name} is missing from this installation", ExitCode.MISSING_EXTRA
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}", ExitCode.FAILED
    code = getattr(error, "code", None)
    details = getattr(error, "details", None)
    if callable(code) and callable(details):  # grpc.RpcError, without importing grpc here
        try:
            return f"{code().name}: {details()}", ExitCode.FAILED
        except Exception:  # noqa: BLE001 - a broken error object still gets one line
            pass
    if type(error).__module__.startswith("skerry.") or type(error) is ValueError:
        return with_reason(error), ExitCode.FAILED
    return f"{type(error).__name__}: {error}", ExitCode.FAILED


def with_reason(error: BaseException) -> str:
    """The error's message, and `` (reason R)`` when it names its refusal more precisely than its
    class does (a ``ConfigError`` whose reason is ``StateCorrupt``)."""
    reason = getattr(error, "reason", "")
    if isinstance(reason, str) and reason and reason != getattr(type(error), "reason", reason):
        return f"{error} (reason {reason})"
    return str(error)


def output_closed(command: str) -> int:
    # Point stdout at /dev/null so the interpreter's final flush does not fail again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return fail(command, "stdout was closed before all output was written", ExitCode.OUTPUT_CLOSED)


def run(command: str, handler, args) -> int:
    """Run ``handler(args)`` and flush stdout; map what escapes to one line and an exit code."""
    try:
        status = handler(args)
        sys.stdout.flush()
        return int(status or 0)
    except BrokenPipeError:
        return output_closed(command)
    except KeyboardInterrupt:
        return fail(command, "interrupted", ExitCode.INTERRUPTED)
    except SystemExit as e:  # a handler that exits itself keeps its code
        return e.code if isinstance(e.code, int) else fail(command, e.code)
    except Exception as e:  # noqa: BLE001 - the point of this module: never a traceback
        message, code = _describe(e)
        return fail(command, message, code)
