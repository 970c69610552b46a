"""Every test that docs/security.md names beside a claim exists (a renamed or deleted test
would leave a claim without proof)."""

from __future__ import annotations

import ast
import re

from tests.conftest import ROOT

REF = re.compile(r"`((?:[\w/]+\.py)?(?:::\w+)?)`")


def _test_functions(path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_every_named_test_exists():
    text = (ROOT / "docs" / "security.md").read_text()
    checked, current = [], None
    for line in text.splitlines():
        if not line.startswith("| ") or "test" not in line:
            continue
        for ref in REF.findall(line):
            if not ref or ("test" not in ref):
                continue
            file_part, _, name = ref.partition("::")
            if file_part:
                current = ROOT / "tests" / file_part
                assert current.exists(), f"{ref}: no such test file"
            if name:
                assert current is not None, f"{ref}: which file?"
                assert name in _test_functions(current), f"{ref}: no such test in {current.name}"
            checked.append(ref)
    assert len(checked) > 40, checked  # the tables were read
