"""Files shipped with loomtui: the bundled themes and the sample repository."""

from __future__ import annotations

from pathlib import Path

import loomtui

_PACKAGE = Path(loomtui.__file__).resolve().parent


def bundled(name: str) -> Path:
    """Path of a top-level data folder (`themes`, `sample_repo`).

    An installed wheel carries them under `loomtui/_data/`; a source checkout (an
    editable install) has them beside the package.
    """
    packaged = _PACKAGE / "_data" / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / name
