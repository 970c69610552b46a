"""Every subpackage of the source tree is installed: pyproject.toml lists the packages one
by one, and a missing one works from a source checkout but not from the wheel."""

from __future__ import annotations

import tomllib

from tests.conftest import ROOT


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT / "src").parts)
             for p in (ROOT / "src").rglob("__init__.py") if "egg-info" not in str(p)}
    assert found and found <= listed, sorted(found - listed)
