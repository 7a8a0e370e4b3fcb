"""The README documents every setting and every command (Datasette's habit)."""

import re
from pathlib import Path

import msgspec

from chatstats import cli, config

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [name for name in config.setting_docs() if f"`{name}`" not in README]
    assert not missing


def _readme_settings() -> dict[str, str]:
    """The README's settings table: variable → its default cell."""
    rows = {}
    for line in README.splitlines():
        m = re.match(r"^\| `(CHATSTATS_[A-Z0-9_]+)` \| ([^|]*) \|", line)
        if m:
            rows[m.group(1)] = m.group(2).strip()
    return rows


def _documented_default(value: object) -> str | None:
    """How the README writes a default; None where any words will do (computed or unset)."""
    if value is msgspec.NODEFAULT or value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def test_readme_settings_table_matches_settings_with_defaults():
    rows = _readme_settings()
    defaults = config.setting_defaults()
    assert sorted(rows) == sorted(defaults), "README table and Settings name different settings"
    wrong = {}
    for name, value in defaults.items():
        want = _documented_default(value)
        cell = rows[name]
        if want is None:
            ok = bool(cell) and (value is msgspec.NODEFAULT or not cell.startswith("`"))
        else:
            ok = cell == want
        if not ok:
            wrong[name] = (cell, want)
    assert not wrong


def test_every_setting_has_help_text():
    assert all(config.setting_docs().values())


def test_every_command_is_documented():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    missing = [name for name in sub.choices if f"`chatstats {name}" not in README]
    assert not missing
