"""The one settings loader (skerry.core.config): variables, flags and their help come from the fields."""

from __future__ import annotations

import argparse
import dataclasses
import pathlib

import pytest

from skerry.core import config
from skerry.core.config import setting
from skerry.core.errors import ConfigError

PREFIX = "SKERRY_TEST_"


@dataclasses.dataclass(frozen=True)
class Settings:
    name: str = setting("x", metavar="NAME", help="a name")
    wait: float = setting(5.0, metavar="DURATION", parse=config.duration, help="how long")
    count: int = setting(1, help="how many")
    where: pathlib.Path | None = setting(None, flag="--dir", help="a directory")
    secret: str | None = setting(None, flag=False, help="never on a command line")
    quiet: bool = False  # no help: neither a flag nor anything but a variable
    made: str = dataclasses.field(default="", metadata={"setting": False})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t", allow_abbrev=False)
    config.add_flags(parser, Settings, PREFIX)
    return parser


def test_flags_are_made_for_settings_with_help_only_and_their_help_names_the_variable(tmp_path):
    parser = _parser()
    args = parser.parse_args(["--name", "n", "--wait", "1s", "--count", "2", "--dir", str(tmp_path)])
    assert config.flag_values(args, Settings) == {"name": "n", "wait": "1s", "count": "2", "where": str(tmp_path)}
    for not_a_flag in ("--secret", "--quiet", "--made", "--where"):
        with pytest.raises(SystemExit):
            parser.parse_args([not_a_flag, "v"])
    text = " ".join(parser.format_help().split())
    assert "--wait DURATION how long [SKERRY_TEST_WAIT]" in text and "--dir WHERE a directory [SKERRY_TEST_WHERE]" in text


def test_a_flag_beats_its_variable_which_beats_the_default(tmp_path):
    args = _parser().parse_args(["--wait", "2m", "--dir", str(tmp_path)])
    env = {"SKERRY_TEST_WAIT": "10s", "SKERRY_TEST_COUNT": "3", "SKERRY_TEST_SECRET": "s3", "SKERRY_TEST_QUIET": "yes"}
    got = config.load(Settings, PREFIX, env, config.flag_values(args, Settings))
    assert got == Settings(name="x", wait=120.0, count=3, where=tmp_path, secret="s3", quiet=True)


def test_an_unloaded_field_is_never_read_from_the_environment_but_may_be_given():
    assert config.load(Settings, PREFIX, {"SKERRY_TEST_MADE": "from-env"}).made == ""
    assert config.load(Settings, PREFIX, {}, {"made": "given"}).made == "given"


def test_paths_expand_the_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.load(Settings, PREFIX, {"SKERRY_TEST_WHERE": "~/d"}).where == tmp_path / "d"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SKERRY_TEST_COUNT": "many"}, r"^count \(SKERRY_TEST_COUNT\) must be an integer"),
        ({"SKERRY_TEST_WAIT": "soon"}, r"^wait \(SKERRY_TEST_WAIT\): 'soon' is not a duration"),
        ({"SKERRY_TEST_QUIET": "perhaps"}, r"^quiet \(SKERRY_TEST_QUIET\) must be true or false"),
    ],
)
def test_a_bad_value_names_the_field_and_its_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        config.load(Settings, PREFIX, env)


def test_an_unknown_override_is_a_programming_error():
    with pytest.raises(TypeError, match="unknown Settings settings: colour"):
        config.load(Settings, PREFIX, {}, {"colour": "blue"})


@dataclasses.dataclass(frozen=True)
class Shapes:
    watch: bool = setting(True, help="a switch that is on by default")
    prune: bool = setting(False, help="a switch that is off by default")
    names: tuple[str, ...] = setting(("a",), flag="--name", help="repeatable")
    level: str = setting("info", choices=("info", "debug"), help="one of two")


def _shapes(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="t", allow_abbrev=False)
    config.add_flags(parser, Shapes, PREFIX)
    return config.flag_values(parser.parse_args(argv), Shapes)


def test_a_bool_is_a_switch_with_its_negation_and_unset_leaves_the_variable_standing():
    env = {"SKERRY_TEST_WATCH": "false", "SKERRY_TEST_PRUNE": "true"}
    assert config.load(Shapes, PREFIX, env, _shapes([])) == Shapes(watch=False, prune=True)
    assert config.load(Shapes, PREFIX, env, _shapes(["--watch", "--no-prune"])) == Shapes(watch=True, prune=False)


def test_a_tuple_flag_repeats_and_each_value_may_be_comma_separated_like_its_variable():
    assert config.load(Shapes, PREFIX, {"SKERRY_TEST_NAMES": "x, y"}).names == ("x", "y")
    given = _shapes(["--name", "b", "--name", "c, d"])
    assert config.load(Shapes, PREFIX, {"SKERRY_TEST_NAMES": "x"}, given).names == ("b", "c", "d")


def test_choices_are_checked_by_the_parser():
    assert _shapes(["--level", "debug"])["level"] == "debug"
    with pytest.raises(SystemExit):
        _shapes(["--level", "loud"])
