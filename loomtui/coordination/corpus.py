"""A reproducible million-line Python tree for `loomtui bench index --corpus`.

The Python files of three pinned wheels from PyPI, checked against their
sha256, unpacked side by side: sympy 1.13.3, Django 5.1.4 and networkx 3.4.2,
2,963 files and about 1.08 million lines. Figures taken on it compare across
machines and over time, which a tree that happens to be installed does not.
Wheels are downloaded once by pip into the user's cache directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from loomtui.errors import LoomError

# (requirement, wheel file name, sha256 of the wheel)
CORPUS_WHEELS = (
    ("sympy==1.13.3", "sympy-1.13.3-py3-none-any.whl",
     "54612cf55a62755ee71824ce692986f23c88ffa77207b30c1368eda4a7060f73"),
    ("django==5.1.4", "Django-5.1.4-py3-none-any.whl",
     "236e023f021f5ce7dee5779de7b286565fdea5f4ab86bae5338e3f7b69896cf0"),
    ("networkx==3.4.2", "networkx-3.4.2-py3-none-any.whl",
     "df5d4365b724cf81b8c6a7312509d0c22386097011ad1abe274afd5e9d3bbc5f"),
)
CORPUS_NAME = "corpus-v1"


def corpus_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "loomtui" / CORPUS_NAME


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(wheels: Path, say: Callable[[str], None]) -> None:
    missing = [(req, name, digest) for req, name, digest in CORPUS_WHEELS
               if not (wheels / name).is_file() or _sha256(wheels / name) != digest]
    if not missing:
        return
    wheels.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as requirements:
        for req, _name, digest in missing:
            requirements.write(f"{req} --hash=sha256:{digest}\n")
    try:
        say(f"downloading {', '.join(req for req, _n, _d in missing)} with pip")
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
             "--require-hashes", "--disable-pip-version-check", "-d", str(wheels), "-r", requirements.name],
            capture_output=True, text=True, check=False)
    finally:
        os.unlink(requirements.name)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise LoomError(f"cannot download the corpus wheels: {last}")
    for _req, name, digest in missing:
        if not (wheels / name).is_file() or _sha256(wheels / name) != digest:
            raise LoomError(f"{name}: downloaded, but its sha256 is not the pinned one")


def build_corpus(progress: Callable[[str], None] | None = None) -> Path:
    """The corpus tree (made on first use, then reused): the Python files of the pinned wheels."""
    say = progress or (lambda _text: None)
    cache = corpus_cache_dir()
    tree = cache / "tree"
    if (cache / "tree.done").is_file() and tree.is_dir():
        return tree
    _download(cache / "wheels", say)
    say(f"unpacking the Python files into {tree}")
    staging = Path(tempfile.mkdtemp(prefix=".tree-", dir=cache))
    try:
        for _req, name, _digest in CORPUS_WHEELS:
            with zipfile.ZipFile(cache / "wheels" / name) as wheel:
                for member in wheel.infolist():
                    # Only .py files at plain relative paths: the tree is read, never run.
                    parts = member.filename.split("/")
                    if not member.filename.endswith(".py") or ".." in parts or member.filename.startswith("/"):
                        continue
                    target = staging.joinpath(*parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(wheel.read(member))
        shutil.rmtree(tree, ignore_errors=True)
        os.replace(staging, tree)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (cache / "tree.done").write_text("\n".join(name for _r, name, _d in CORPUS_WHEELS) + "\n")
    return tree
