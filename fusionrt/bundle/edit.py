"""`edit(bundle)`: the one way to change a finished bundle.

Changed files and the new manifest are staged in a sibling directory that also holds hard links
(or copies) of every unchanged file, then the staged directory is swapped with the bundle: with
one atomic exchange where the OS offers it (Linux renameat2), else with two renames. An error or a
kill before the swap leaves the old bundle untouched, complete and valid; each changed file is
hashed once, unchanged files keep their recorded hashes.

    with edit(bundle) as change:
        change.write_json("reports/eval.json", report)
        shutil.copyfile(candidate, change.stage("image_encoder.int8.onnx"))
        change.manifest["components"]["image_encoder"]["default_variant"] = "int8"
    bundle = change.bundle  # the bundle after the commit
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterator

from fusionrt.bundle.format import MANIFEST, Bundle, _inside, load, parse, read_manifest, sha256_of
from fusionrt.errors import BundleError


class BundleEdit:
    """A pending change of one bundle: `manifest` is a private copy; files go through `stage`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest = copy.deepcopy(read_manifest(root))  # the manifest on disk now, not a stale copy
        self.bundle: Bundle | None = None
        self._staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".edit", dir=root.parent))
        self._changed: set[str] = set()
        self._removed: set[str] = set()

    def stage(self, relative: str) -> Path:
        """Where to write the new content of `relative` (a path inside the bundle)."""
        key = self._key(relative)
        path = self._staging / key
        path.parent.mkdir(parents=True, exist_ok=True)
        self._changed.add(key)
        self._removed.discard(key)
        return path

    def write_text(self, relative: str, text: str) -> Path:
        path = self.stage(relative)
        path.write_text(text, encoding="utf-8")
        return path

    def write_json(self, relative: str, value) -> Path:
        return self.write_text(relative, json.dumps(value, indent=2) + "\n")

    def copy_in(self, source: str | Path, relative: str) -> Path:
        path = self.stage(relative)
        shutil.copyfile(source, path)
        return path

    def remove(self, relative: str) -> None:
        key = self._key(relative)
        self._changed.discard(key)
        self._removed.add(key)

    def commit(self) -> Bundle:
        files = dict(self.manifest.get("files") or {})
        for key in self._removed:
            files.pop(key, None)
        for key in sorted(self._changed):
            files[key] = sha256_of(self._staging / key)
        for key in files:
            if key not in self._changed:
                self._link(key)
        manifest = {**self.manifest, "files": files}
        parse(self._staging, manifest, verify_hashes=False)  # nothing invalid is swapped in
        (self._staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        swap_in(self._staging, self.root)
        self.bundle = parse(self.root, manifest, verify_hashes=False)
        return self.bundle

    def discard(self) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)

    def _key(self, relative: str) -> str:
        _inside(self.root, relative, "edited file")
        key = PurePosixPath(relative).as_posix()
        if key == MANIFEST:
            raise BundleError(f"{self.root}: change the manifest through BundleEdit.manifest, not as a file")
        return key

    def _link(self, key: str) -> None:
        source, target = self.root / key, self._staging / key
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:  # another filesystem or no hard links: copy
            shutil.copy2(source, target)


@contextlib.contextmanager
def edit(bundle: Bundle | str | Path) -> Iterator[BundleEdit]:
    """Stage a change of `bundle` and commit it when the block ends without an error."""
    root = bundle.root if isinstance(bundle, Bundle) else Path(bundle)
    if not isinstance(bundle, Bundle):
        load(root)  # refuse to edit what is not a valid bundle
    change = BundleEdit(root)
    try:
        yield change
        change.commit()
    finally:
        change.discard()


def swap_in(staged: Path, root: Path) -> None:
    """Put the directory `staged` in the place of `root` (which may not exist yet) and remove the old
    tree. The result gets root's permissions, or the umask's for a new one (mkdtemp made it 0700)."""
    if root.exists():
        mode = stat.S_IMODE(os.stat(root).st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o777 & ~umask
    os.chmod(staged, mode)
    if not root.exists():
        staged.rename(root)
        return
    if _exchange(staged, root):
        shutil.rmtree(staged, ignore_errors=True)  # staged now holds the old tree
        return
    old = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old", dir=root.parent))
    old.rmdir()
    root.rename(old)
    try:
        staged.rename(root)
    except BaseException:
        old.rename(root)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return done == 0
