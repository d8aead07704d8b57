"""Shell completion for bash, zsh and fish: ``source <(skerry completion bash)``.

Why dynamic: the scripts hand the words typed so far to ``skerry __complete`` which walks the
real parser, so completion never goes stale when a command or flag changes (cobra's pattern in
kubectl and flux). ``complete`` offers sub-commands, flags of the command reached, and the
choices of a flag that has them (``-o <TAB>`` gives ``table wide json yaml``).
"""

from __future__ import annotations

import argparse

from skerry.cli.parser import subcommands

SCRIPTS = {
    "bash": """\
# skerry completion for bash: source <(skerry completion bash)
_skerry() {
    local IFS=$'\\n'
    COMPREPLY=($(skerry __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _skerry skerry
""",
    "zsh": """\
#compdef skerry
# skerry completion for zsh: source <(skerry completion zsh)
_skerry() {
    local -a candidates
    candidates=("${(@f)$(skerry __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    compadd -a candidates
}
compdef _skerry skerry
""",
    "fish": """\
# skerry completion for fish: skerry completion fish | source
complete -c skerry -f -a '(skerry __complete (commandline -opc)[2..-1] (commandline -ct))'
""",
}


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh, fish)",
        description="Print the completion script for SHELL. bash: source <(skerry completion bash); "
        "zsh: source <(skerry completion zsh); fish: skerry completion fish | source.",
    )
    p.add_argument("shell", choices=sorted(SCRIPTS), metavar="SHELL", help="bash, zsh or fish")
    p.set_defaults(func=lambda args: print(SCRIPTS[args.shell], end="") or 0)


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def candidates(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """What may come in place of ``words[-1]``, given the words before it."""
    *before, current = words or [""]
    for i, word in enumerate(before):
        child = subcommands(parser).get(word)
        if child is not None:
            parser = child
            continue
        action = _options(parser).get(word)
        if action is not None and i == len(before) - 1 and action.nargs != 0:
            return [str(c) for c in action.choices or () if str(c).startswith(current)]
    if before:
        action = _options(parser).get(before[-1])
        if action is not None and action.nargs != 0:
            return [str(c) for c in action.choices or () if str(c).startswith(current)]
    if current.startswith("-"):
        return sorted(s for s in _options(parser) if s.startswith(current) and (s.startswith("--") or len(current) > 1))
    words = list(subcommands(parser)) + [
        str(c) for a in parser._actions if not a.option_strings and a.choices and not subcommands(parser)
        for c in a.choices
    ]
    return sorted(w for w in words if w.startswith(current))


def complete(parser: argparse.ArgumentParser, words: list[str]) -> int:
    for c in candidates(parser, words):
        print(c)
    return 0
