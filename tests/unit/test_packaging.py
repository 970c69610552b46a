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


def test_every_folder_of_package_files_is_listed_too():
    """A folder of data files under a package (the hub's job templates) is a package of its
    own to setuptools: unlisted, it warns "Package would be ignored" and a later setuptools
    drops it from the wheel."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {name: ROOT / path for name, path in config["package-dir"].items() if name}
    found = {f"{name}.{'.'.join(d.relative_to(root).parts)}"
             for name, root in roots.items() for d in root.rglob("*")
             if d.is_dir() and "__pycache__" not in d.parts and any(d.iterdir())}
    assert found and found <= listed, sorted(found - listed)
    assert set(config["package-data"]) <= listed
