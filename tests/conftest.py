"""Shared pytest fixtures: paths to real data that developers and CI have beside the repository."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FSDD_DIR = REPO_ROOT.parent / "shared" / "data" / "fsdd" / "recordings"


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    """Folder of Free Spoken Digit Dataset wav files (8 kHz, `{digit}_{speaker}_{take}.wav`)."""
    if not FSDD_DIR.is_dir():
        pytest.fail(f"FSDD recordings not found at {FSDD_DIR}; CI and developers have ../shared beside the repo")
    return FSDD_DIR
