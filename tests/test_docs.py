"""The README documents every setting and every command (Datasette's habit)."""

from pathlib import Path

from chatstats import cli, config

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [name for name in config.setting_docs() if f"`{name}`" not in README]
    assert not missing


def test_every_setting_has_help_text():
    assert all(config.setting_docs().values())


def test_every_command_is_documented():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    missing = [name for name in sub.choices if f"`chatstats {name}" not in README]
    assert not missing
