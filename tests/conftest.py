"""Fixtures shared by the whole test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

# The real interaction logs sit beside the repository, never inside it, because
# their licenses forbid redistribution.
SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the directory of the real logs, or skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found: the real logs are not on this machine")
    return SHARED_DATA.resolve()
