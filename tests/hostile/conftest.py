"""Each test_hostile_NAME.py here runs NAME_tenant.c, compiled once per
module: the `tenant` fixture is its path."""
from __future__ import annotations

from pathlib import Path

import pytest

from _tenants import compile_c


@pytest.fixture(scope="module")
def tenant(request, tmp_path_factory) -> str:
    name = Path(request.module.__file__).stem.removeprefix("test_hostile_")
    return str(compile_c(Path(__file__).with_name(f"{name}_tenant.c"),
                         tmp_path_factory.mktemp(name)))
