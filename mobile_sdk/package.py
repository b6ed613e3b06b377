"""The package contract: layout, manifest schema (versioned), and the reader every consumer uses.

A package is a folder `NAME.mobilepkg/` (or a .zip of it):

    manifest.json                    this contract (schema_version below)
    tokenizer.json                   what an app needs to tokenize prompts itself
    executorch/<component>.pte       text_encoder, unet (one method per distinct temporal plan), vae_decoder
    coreml/<component>.mlpackage     the same components for Core ML (when that target is exported)
    test_vectors/<name>.bin          raw little-endian tensors with shapes and dtypes in the manifest

Apps run: ids = tokenize(prompt); hidden = text_encoder(ids); x = noise; for each step s:
v = unet[s.unet_method](x, s.timestep, hidden); x = x + s.dt * v; then rgb = vae_decoder(frame) for each
frame, x255. The writer is export.package_writer; this module only reads and verifies.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from .config import read_json
from .errors import SDKError

SCHEMA = "mobile-sdk-package"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
PACKAGE_SUFFIX = ".mobilepkg"
COMPONENTS = ("text_encoder", "unet", "vae_decoder")
TARGET_DIRS = {"executorch": "executorch", "coreml": "coreml"}
TARGET_SUFFIX = {"executorch": ".pte", "coreml": ".mlpackage"}
TEST_VECTOR_DIR = "test_vectors"
DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "uint8": np.uint8}
REQUIRED_KEYS = ("schema", "schema_version", "sdk_version", "tools", "model", "video", "latent", "tokenizer",
                 "scheduler", "steps", "temporal_plans", "targets", "files", "test_vectors")


class PackageError(SDKError):
    """A package is malformed, corrupted, or of an unsupported schema version."""


def component_path(target: str, component: str) -> str:
    """The fixed resource name of a component inside a package (shared with the apps' loaders)."""
    return f"{TARGET_DIRS[target]}/{component}{TARGET_SUFFIX[target]}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def list_files(root: Path) -> list[str]:
    """Every file under root except the top-level manifest, as sorted posix paths (what the checksums cover)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.relative_to(root).as_posix() != MANIFEST)


class Package:
    """A verified package folder. Use `open_package` to get one."""

    def __init__(self, root: Path, manifest: dict, cleanup: Path | None = None):
        self.root, self.manifest, self._cleanup = root, manifest, cleanup

    def __enter__(self) -> "Package":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._cleanup is not None:
            shutil.rmtree(self._cleanup, ignore_errors=True)
            self._cleanup = None

    @property
    def targets(self) -> list[str]:
        return sorted(self.manifest["targets"])

    def component(self, target: str, component: str) -> dict:
        try:
            return self.manifest["targets"][target]["components"][component]
        except KeyError:
            raise PackageError(f"{self.root / MANIFEST}: no {component!r} for target {target!r}; "
                               f"targets: {', '.join(self.targets)}") from None

    def path(self, relative: str) -> Path:
        return self.root / relative

    def tokenizer_spec(self) -> dict:
        return json.loads((self.root / TOKENIZER).read_text())

    def test_vector(self, name: str) -> dict[str, dict[str, np.ndarray]]:
        """{"inputs": {name: array}, "outputs": {name: array}} for one recorded test vector."""
        spec = self.manifest["test_vectors"][name]
        return {side: {k: read_tensor(self.root, v) for k, v in spec[side].items()} for side in ("inputs", "outputs")}


def read_tensor(root: Path, spec: dict) -> np.ndarray:
    dtype = DTYPES[spec["dtype"]]
    data = np.fromfile(root / spec["file"], dtype=np.dtype(dtype).newbyteorder("<"))
    expected = int(np.prod(spec["shape"])) if spec["shape"] else 1
    if data.size != expected:
        raise PackageError(f"{root / spec['file']}: holds {data.size} values, manifest says shape {spec['shape']}")
    return data.reshape(spec["shape"]).astype(dtype)


def open_package(path: str | os.PathLike, verify: bool = True) -> Package:
    """Open a package folder or .zip; check the schema version and (by default) every file's sha256."""
    path = Path(path)
    if not path.exists():
        raise PackageError(f"{path}: no such package")
    cleanup = None
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise PackageError(f"{path}: not a package folder or zip file")
        cleanup = Path(tempfile.mkdtemp(prefix="mobilepkg-"))
        try:
            root = _safe_extract(path, cleanup)
        except BaseException:
            shutil.rmtree(cleanup, ignore_errors=True)
            raise
    else:
        root = path
    try:
        manifest = load_manifest(root)
        if verify:
            verify_files(root, manifest)
    except BaseException:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
        raise
    return Package(root, manifest, cleanup)


def _safe_extract(zip_path: Path, dest: Path) -> Path:
    """Extract, refusing absolute paths, '..' and links that would escape the folder (zip-slip)."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            name = PurePosixPath(info.filename)
            if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
                raise PackageError(f"{zip_path}: entry {info.filename!r} escapes the package folder; refusing to extract")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise PackageError(f"{zip_path}: entry {info.filename!r} is a symbolic link; refusing to extract")
        zf.extractall(dest)
    manifests = list(dest.glob(MANIFEST)) + list(dest.glob(f"*/{MANIFEST}"))
    if not manifests:
        raise PackageError(f"{zip_path}: no {MANIFEST} at the top of the zip (or in its one folder)")
    return manifests[0].parent


def load_manifest(root: Path) -> dict:
    path = root / MANIFEST
    manifest = read_json(path, PackageError, f"manifest; {root} is not a package")
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise PackageError(f"{path}: not a {SCHEMA} manifest")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise PackageError(f"{path}: schema_version {version!r} is not supported by this SDK (it reads version {SCHEMA_VERSION})")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise PackageError(f"{path}: missing key(s) {missing}")
    return manifest


def verify_files(root: Path, manifest: dict) -> None:
    listed = manifest["files"]
    for rel, info in listed.items():
        p = root / rel
        if not p.is_file():
            raise PackageError(f"{p}: listed in the manifest but missing")
        if p.stat().st_size != info["bytes"]:
            raise PackageError(f"{p}: size {p.stat().st_size} bytes, manifest says {info['bytes']} (truncated or replaced)")
        if sha256_file(p) != info["sha256"]:
            raise PackageError(f"{p}: sha256 mismatch (the file is corrupted or was modified)")
    extra = sorted(set(list_files(root)) - set(listed))
    if extra:
        raise PackageError(f"{root / extra[0]}: not listed in the manifest ({len(extra)} unlisted file(s))")

