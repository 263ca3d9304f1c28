"""The app's own pages as a project without overrides sees them (the demo overrides base.html)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import atlassian_oauth

APP_TEMPLATES = Path(atlassian_oauth.__file__).parent / "templates"


@pytest.fixture
def app_frame(settings: Any) -> None:
    """The app's templates ahead of the demo's: its own base.html frames its pages."""
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(APP_TEMPLATES)]}]
