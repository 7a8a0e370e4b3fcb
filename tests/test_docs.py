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


ROOT = Path(__file__).resolve().parent.parent
LOOPBACK_URL = re.compile(r"^https?://(127\.0\.0\.1|localhost|\[::1\])([:/]|$)")


def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_docs_exist():
    names = {p.name for p in _doc_files()}
    assert {"README.md", "api.md", "design.md"} <= names


def test_no_link_leaves_the_repository():
    """The repo stands alone: every link resolves to a file inside it, no text points at a
    path outside it, and the only URLs are the daemon's own loopback address."""
    outside = []
    for doc in _doc_files():
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            path = target.split("#", 1)[0]
            if not path:
                continue  # an anchor on the same page
            if re.match(r"^[a-z][a-z0-9+.-]*:", path):
                outside.append((doc.name, target))
                continue
            resolved = (doc.parent / path).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                outside.append((doc.name, target))
        for url in re.findall(r"[a-z][a-z0-9+.-]*://[^\s)`'\"<>]+", text):
            if not LOOPBACK_URL.match(url):
                outside.append((doc.name, url))
        if "../" in text:
            outside.append((doc.name, "../"))
    assert not outside
