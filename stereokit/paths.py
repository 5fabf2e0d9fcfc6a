"""Checks of user-given paths, so a file where a folder belongs (or the reverse) is one sentence."""

from __future__ import annotations

from pathlib import Path

from stereokit.errors import StereokitError


def folder_to_write(path: Path, flag: str) -> Path:
    """A folder we may create or write into: absent, or a directory (never a file)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StereokitError(f"{path}: {flag} is a file, not a folder; give a folder.")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StereokitError(f"{path}: {flag} lies under {parent}, which is a file, not a folder.")
            break
    return path


def folder_to_read(path: Path, flag: str) -> Path:
    """A folder we read from: a file there is refused here; a missing one by the reader, which knows what it wanted."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StereokitError(f"{path}: {flag} is a file, not a folder; give a folder.")
    return path
