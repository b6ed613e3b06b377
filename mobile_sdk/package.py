"""The package reader every Python consumer uses: layout and names from the contract
(mobile_sdk/contract/names.json), the manifest checked against the schema of its version, every file
checksummed and every path kept inside the package.

A package is a folder `NAME.mobilepkg/` (or a .zip of it):

    manifest.json                    schema_version 3 (1 and 2 are still read)
    tokenizer.json                   what an app needs to tokenize prompts itself
    executorch/<component>.pte       text_encoder, unet (one method per distinct plan or sub-network of the steps,
                                     at each size), vae_decoder (one method per size)
    coreml/<component>.mlpackage     the same components for Core ML (when that target is exported)
    test_vectors/<name>.bin          raw little-endian tensors with shapes and dtypes in the manifest

Apps run, at one of the manifest's sizes (the first, which is the top-level video/latent/steps, by
default): ids = tokenize(prompt); hidden = text_encoder(ids); x = portable noise for the seed; for each
step s of the size: v = unet[s.unet_method](x, s.timestep, hidden); x = x + s.dt * v; then
rgb = vae_decoder[size.vae_decoder_method](frame) for each frame, x255. The writer is export.lowering.package_writer; this module only reads and verifies.
"""
from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import weakref
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from .config import read_json
from .contract import names
from .contract.validate import validate_document
from .errors import SDKError

_NAMES = names()
SCHEMA = _NAMES["package"]["schema"]
SCHEMA_VERSION = _NAMES["package"]["schema_version"]
MANIFEST = _NAMES["package"]["manifest"]
TOKENIZER = _NAMES["package"]["tokenizer"]
PACKAGE_SUFFIX = _NAMES["package"]["suffix"]
COMPONENTS = tuple(_NAMES["components"])
TEST_VECTOR_DIR = _NAMES["package"]["test_vector_dir"]
IO_NAMES = {c: (io["inputs"], io["outputs"]) for c, io in _NAMES["io"].items()}
DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "uint8": np.uint8}


class PackageError(SDKError):
    """A package is malformed, corrupted, or of an unsupported schema version."""


def component_path(target: str, component: str) -> str:
    """The fixed resource name of a component inside a package (shared with the apps' loaders)."""
    spec = _NAMES["targets"][target]
    return _NAMES["resource_path"].format(dir=spec["dir"], component=component, suffix=spec["suffix"])


def entry_names(num_plans: int) -> list[str]:
    """The ExecuTorch method / Core ML function of each plan: 'main' for one, 'plan_0', ... for several."""
    rule = _NAMES["entry_names"]
    return [rule["single"]] if num_plans == 1 else [rule["per_plan"].format(index=i) for i in range(num_plans)]


def sized_entry_name(name: str, size: tuple[int, int, int]) -> str:
    """The entry of `name` at an extra (frames, height, width)."""
    f, h, w = size
    return name + _NAMES["entry_names"]["size_suffix"].format(frames=f, height=h, width=w)


def size_key(size: dict) -> tuple[int, int, int]:
    """(frames, height, width) of one of a manifest's sizes."""
    v = size["video"]
    return v["num_frames"], v["height"], v["width"]


def format_size(size: tuple[int, int, int]) -> str:
    return "x".join(map(str, size))


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
        self.root, self.manifest = root, manifest
        # an extracted zip goes away on close(), or when the package is collected or the process exits
        self._cleanup = weakref.finalize(self, shutil.rmtree, cleanup, True) if cleanup is not None else None

    def __enter__(self) -> "Package":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()

    @property
    def targets(self) -> list[str]:
        return sorted(self.manifest["targets"])

    def component(self, target: str, component: str) -> dict:
        try:
            return self.manifest["targets"][target]["components"][component]
        except KeyError:
            raise PackageError(f"{self.root / MANIFEST}: no {component!r} for target {target!r}; "
                               f"targets: {', '.join(self.targets)}") from None

    def single_method(self, target: str, component: str) -> str:
        """The ExecuTorch method of a one-entry component ('main'; 'forward' in version 1 packages)."""
        declared = self.component(target, component)["methods"]
        if len(declared) != 1:
            raise PackageError(f"{self.root / MANIFEST}: {target} {component} declares {len(declared)} entries, expected one")
        return next(iter(declared))

    def sizes(self) -> list[dict]:
        """Every size the package generates at, the default first: {video, latent, steps, vae_decoder_method}
        (a version 1 or 2 package has one: its top level's, with its only ExecuTorch decoder method)."""
        m = self.manifest
        if "sizes" in m:
            return m["sizes"]
        return [{"video": m["video"], "latent": m["latent"], "steps": m["steps"],
                 "vae_decoder_method": self.single_method("executorch", "vae_decoder")}]

    def size(self, num_frames: int | None = None, height: int | None = None, width: int | None = None) -> dict:
        """The size of these frames, height and width (those not given: the default size's)."""
        sizes = self.sizes()
        want = tuple(v or d for v, d in zip((num_frames, height, width), size_key(sizes[0])))
        for s in sizes:
            if size_key(s) == want:
                return s
        raise PackageError(f"{self.root}: no size {format_size(want)} (frames x height x width) in this package; "
                           f"it was exported for {', '.join(format_size(size_key(s)) for s in sizes)}")

    def path(self, relative: str) -> Path:
        return self.root / relative

    def tokenizer_spec(self) -> dict:
        """tokenizer.json, checked against its schema (version 1 manifests repeat it inside the manifest)."""
        path = self.root / TOKENIZER
        spec = read_json(path, PackageError, "tokenizer")
        validate_document(spec, "tokenizer", path, PackageError)
        return spec

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
    """Open a package folder or .zip; check the schema version and (by default) every file's sha256.

    A zip is checked against its own manifest before anything is written (entries, sizes), extracted
    with every file's size capped and sha256 checked while it streams, and removed again by `close()`
    (use the package as a context manager) or on any error."""
    path = Path(path)
    if not path.exists():
        raise PackageError(f"{path}: no such package")
    if path.is_dir():
        manifest = load_manifest(path)
        if verify:
            verify_files(path, manifest)
        return Package(path, manifest)
    if not zipfile.is_zipfile(path):
        raise PackageError(f"{path}: not a package folder or zip file")
    cleanup = Path(tempfile.mkdtemp(prefix="mobilepkg-"))
    try:
        root, manifest = _extract_verified(path, cleanup)
    except BaseException:
        shutil.rmtree(cleanup, ignore_errors=True)
        raise
    return Package(root, manifest, cleanup)


MAX_MANIFEST_BYTES = 64 << 20


def _extract_verified(zip_path: Path, dest: Path) -> tuple[Path, dict]:
    """Refuse zip-slip, links and anything the manifest does not list, before writing a byte; then stream
    each file out, never past its listed size, checking its sha256 (errors name the zip and the entry)."""
    with zipfile.ZipFile(zip_path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        for info in infos:
            name = PurePosixPath(info.filename)
            if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
                raise PackageError(f"{zip_path}: entry {info.filename!r} escapes the package folder; refusing to extract")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise PackageError(f"{zip_path}: entry {info.filename!r} is a symbolic link; refusing to extract")
        manifests = [i for i in infos if PurePosixPath(i.filename).name == MANIFEST and len(PurePosixPath(i.filename).parts) <= 2]
        if not manifests:
            raise PackageError(f"{zip_path}: no {MANIFEST} at the top of the zip (or in its one folder)")
        top = PurePosixPath(manifests[0].filename).parent
        if manifests[0].file_size > MAX_MANIFEST_BYTES:
            raise PackageError(f"{zip_path}: entry {manifests[0].filename!r} is {manifests[0].file_size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}")
        prefix = "" if top == PurePosixPath(".") else f"{top.as_posix()}/"
        root = dest / top
        root.mkdir(parents=True, exist_ok=True)
        (root / MANIFEST).write_bytes(_read_capped(zf, manifests[0], MAX_MANIFEST_BYTES, zip_path))
        manifest = load_manifest(root)
        listed = manifest["files"]
        entries = {}
        for info in infos:
            rel = info.filename[len(prefix):] if info.filename.startswith(prefix) else None
            if info is manifests[0]:
                continue
            if rel not in listed:
                raise PackageError(f"{zip_path}: entry {info.filename!r} is not listed in the manifest; refusing to extract")
            if info.file_size != listed[rel]["bytes"]:
                raise PackageError(f"{zip_path}: entry {info.filename!r} is {info.file_size} bytes, the manifest says {listed[rel]['bytes']}")
            entries[rel] = info
        missing = sorted(set(listed) - set(entries))
        if missing:
            raise PackageError(f"{zip_path}: {missing[0]!r} is listed in the manifest but not in the zip")
        for rel, info in entries.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()
            with zf.open(info) as src, open(target, "wb") as dst:
                written = 0
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    written += len(chunk)
                    if written > listed[rel]["bytes"]:
                        raise PackageError(f"{zip_path}: entry {info.filename!r} inflates past its listed size")
                    h.update(chunk)
                    dst.write(chunk)
            if h.hexdigest() != listed[rel]["sha256"]:
                raise PackageError(f"{zip_path}: entry {info.filename!r}: sha256 mismatch (the file is corrupted or was modified)")
    return root, manifest


def _read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, zip_path: Path) -> bytes:
    with zf.open(info) as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise PackageError(f"{zip_path}: entry {info.filename!r} inflates past {cap} bytes")
    return data


def load_manifest(root: Path) -> dict:
    """manifest.json, valid against the schema of its version, every path it names inside the package."""
    path = root / MANIFEST
    manifest = read_json(path, PackageError, f"manifest; {root} is not a package")
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise PackageError(f"{path}: not a {SCHEMA} manifest")
    validate_document(manifest, "manifest", path, PackageError)
    listed = manifest["files"]
    folders = {f.rsplit("/", i)[0] for f in listed for i in range(1, f.count("/") + 1)}  # e.g. an .mlpackage
    for where, rel in referenced_files(manifest):
        if rel not in listed and rel not in folders:
            raise PackageError(f"{path}: {where} names {rel!r}, which is not listed in $.files (not checksummed)")
    for rel in listed:
        if not _inside(root, rel):
            raise PackageError(f"{path}: $.files names {rel!r}, which resolves outside the package")
    if "sizes" in manifest and any(manifest["sizes"][0][k] != manifest[k] for k in ("video", "latent", "steps")):
        raise PackageError(f"{path}: $.sizes[0] must be the default size: the top-level video, latent and steps")
    itemsize = _NAMES["dtypes"]
    for name, vec in manifest["test_vectors"].items():
        for side in ("inputs", "outputs"):
            for key, t in vec[side].items():
                expected = math.prod(t["shape"]) * itemsize[t["dtype"]]
                if listed[t["file"]]["bytes"] != expected:
                    raise PackageError(f"{path}: test_vectors.{name}.{side}.{key}: shape {t['shape']} {t['dtype']} is "
                                       f"{expected} bytes, but {t['file']} is {listed[t['file']]['bytes']}")
    return manifest


def referenced_files(manifest: dict) -> list[tuple[str, str]]:
    """(JSON path, file) for every file the manifest points at: components, chunks, tokenizer, test vectors."""
    refs = [("$.tokenizer.file", manifest["tokenizer"]["file"])]
    for target, spec in manifest["targets"].items():
        for comp, c in spec["components"].items():
            if c.get("file"):
                refs.append((f"$.targets.{target}.components.{comp}.file", c["file"]))
            for i, chunk in enumerate(c.get("chain") or []):
                refs.append((f"$.targets.{target}.components.{comp}.chain[{i}].file", chunk["file"]))
    for name, vec in manifest["test_vectors"].items():
        for side in ("inputs", "outputs"):
            for key, t in vec[side].items():
                refs.append((f"$.test_vectors.{name}.{side}.{key}.file", t["file"]))
    return refs


def _inside(root: Path, rel: str) -> bool:
    base = root.resolve()
    return (base / rel).resolve().is_relative_to(base)


def verify_files(root: Path, manifest: dict) -> None:
    listed = manifest["files"]
    for rel, info in listed.items():
        p = root / rel
        if p.is_symlink():
            raise PackageError(f"{p}: a symbolic link; packages hold plain files only")
        if not p.is_file():
            raise PackageError(f"{p}: listed in the manifest but missing")
        if p.stat().st_size != info["bytes"]:
            raise PackageError(f"{p}: size {p.stat().st_size} bytes, manifest says {info['bytes']} (truncated or replaced)")
        if sha256_file(p) != info["sha256"]:
            raise PackageError(f"{p}: sha256 mismatch (the file is corrupted or was modified)")
    extra = sorted(set(list_files(root)) - set(listed))
    if extra:
        raise PackageError(f"{root / extra[0]}: not listed in the manifest ({len(extra)} unlisted file(s))")

