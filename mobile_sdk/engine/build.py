"""Build this CMake project (mvd_engine, mvd_engine_cli, et_bench_runner; optionally a JNI bridge)
for the host or, cross-compiled, for arm64 Linux. One helper for the engine and the profiler's runner.

Builds are cached per source hash, executorch version and installation path (the binaries' rpath
points into that installation), under ~/.cache/mobile-sdk/engine/; a build counts as done only once
its stamp file is written, so an interrupted build is finished, not trusted.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from mobile_sdk.errors import SDKError

ENGINE_SOURCE = Path(__file__).resolve().parent
CLI_NAME = "mvd_engine_cli"
RUNNER_NAME = "et_bench_runner"
JNI_LIBRARY = "libmvd_jni.so"
ARCHES = ("host", "arm64")
ARM64_EXECUTORCH_VERSION = "1.5.1"  # the manylinux_2_28_aarch64 wheel setup_arm64.sh unpacks
ARM64_TOOLCHAIN = ENGINE_SOURCE / "cmake" / "aarch64-linux-gnu.cmake"
ARM64_SYSROOT = Path("/usr/aarch64-linux-gnu")  # QEMU_LD_PREFIX for running the binaries
SETUP_ARM64 = ENGINE_SOURCE / "setup_arm64.sh"
SOURCE_SUFFIXES = {".cpp", ".h", ".txt", ".cmake"}
STAMP = ".build-complete"


class EngineBuildError(SDKError):
    """The engine could not be configured or built."""


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mobile-sdk"


def executorch_root() -> Path:
    """The installed executorch package (host builds link its shared libraries)."""
    import executorch

    return Path(list(executorch.__path__)[0])


def arm64_executorch_root() -> Path:
    """The unpacked aarch64 executorch wheel (setup_arm64.sh puts it there)."""
    return cache_root() / "arm64" / f"executorch-{ARM64_EXECUTORCH_VERSION}" / "executorch"


def nlohmann_include() -> Path | None:
    """The header folder of PyPI's nlohmann-json package (CMake tries an installed package first)."""
    try:
        import nlohmann_json
    except ImportError:
        return None
    return Path(str(nlohmann_json.get_include()))


def arm64_missing() -> str | None:
    """Why an arm64 build cannot run here, or None."""
    for tool in ("aarch64-linux-gnu-g++", "qemu-aarch64-static"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed; run {SETUP_ARM64.relative_to(ENGINE_SOURCE.parents[1])} first"
    if not (arm64_executorch_root() / "share" / "cmake" / "executorch-config.cmake").is_file():
        return (f"the aarch64 executorch {ARM64_EXECUTORCH_VERSION} wheel is not unpacked in {arm64_executorch_root().parent}; "
                f"run {SETUP_ARM64.relative_to(ENGINE_SOURCE.parents[1])} first")
    return None


def java_home() -> Path:
    """The JDK whose jni.h a host JNI build compiles against: $JAVA_HOME, else the one javac belongs to."""
    candidates = [os.environ.get("JAVA_HOME")]
    if javac := shutil.which("javac"):
        candidates.append(str(Path(javac).resolve().parents[1]))
    for c in filter(None, candidates):
        if (Path(c) / "include" / "jni.h").is_file():
            return Path(c)
    raise EngineBuildError("building the JNI bridge on the host needs a JDK (set JAVA_HOME or put javac on PATH)")


def _hash_tree(h, root: Path) -> None:
    """Sources only: the top folder's files and cmake/, include/, src/, tools/ (a build folder someone
    made inside would otherwise change the hash on every build)."""
    files = [p for p in root.iterdir() if p.is_file()]
    for sub in ("cmake", "include", "src", "tools"):
        files += [p for p in (root / sub).rglob("*") if p.is_file()] if (root / sub).is_dir() else []
    for f in sorted(p for p in files if p.suffix in SOURCE_SUFFIXES):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())


def build_dir(arch: str = "host", jni_dir: Path | None = None) -> Path:
    """Where this source, executorch build and installation (and JNI bridge, if any) are built."""
    if arch not in ARCHES:
        raise EngineBuildError(f"unknown --arch {arch!r}; choose {' or '.join(ARCHES)}")
    h = hashlib.sha256()
    _hash_tree(h, ENGINE_SOURCE)
    if jni_dir is not None:
        _hash_tree(h, Path(jni_dir))
        h.update(str(Path(jni_dir).resolve()).encode())
    if arch == "host":
        h.update(metadata.version("executorch").encode())
        h.update(str(executorch_root()).encode())
    else:
        h.update(str(arm64_executorch_root()).encode())
    return cache_root() / "engine" / f"{arch}-{'jni-' if jni_dir else ''}{h.hexdigest()[:16]}"


def build(arch: str = "host", jni_dir: Path | None = None, log=print) -> Path:
    """Configure and build (if not cached); returns the build folder holding the binaries."""
    out = build_dir(arch, jni_dir)
    if (out / STAMP).is_file():
        return out
    for tool in ("cmake", "c++" if arch == "host" else "aarch64-linux-gnu-g++"):
        if shutil.which(tool) is None:
            raise EngineBuildError(f"building the engine needs {tool!r} on PATH"
                                   + (f" (run {SETUP_ARM64})" if arch == "arm64" else ""))
    if arch == "arm64" and (why := arm64_missing()):
        raise EngineBuildError(why)
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same folder
        if (out / STAMP).is_file():
            return out
        log(f"building the engine ({arch}) in {out}")
        configure = ["cmake", "-S", str(ENGINE_SOURCE), "-B", str(out), "-DCMAKE_BUILD_TYPE=Release"]
        env = dict(os.environ)
        if arch == "host":
            configure.append(f"-DCMAKE_PREFIX_PATH={executorch_root()}")
        else:
            configure += [f"-DCMAKE_PREFIX_PATH={arm64_executorch_root()}", f"-DCMAKE_TOOLCHAIN_FILE={ARM64_TOOLCHAIN}"]
        if (include := nlohmann_include()) is not None:
            configure.append(f"-DMVD_NLOHMANN_INCLUDE={include}")
        if jni_dir is not None:
            env["JAVA_HOME"] = str(java_home())
            configure += [f"-DMVD_JNI_SOURCE_DIR={Path(jni_dir).resolve()}", f"-DJAVA_HOME={env['JAVA_HOME']}"]
        for cmd in (configure, ["cmake", "--build", str(out), "--parallel", "2"]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise EngineBuildError(f"{' '.join(cmd[:2])} failed for {ENGINE_SOURCE} ({arch}):\n"
                                       f"{(proc.stdout + proc.stderr)[-3000:]}")
        for name in (CLI_NAME, RUNNER_NAME) + ((JNI_LIBRARY,) if jni_dir is not None else ()):
            if not any(out.rglob(name)):
                raise EngineBuildError(f"the build finished but {name} is missing in {out}")
        (out / STAMP).write_text("ok\n")
    return out


def cli_path(arch: str = "host", log=print) -> Path:
    return build(arch, log=log) / CLI_NAME


def runner_path(log=print) -> Path:
    return build("host", log=log) / RUNNER_NAME


def run_command(binary: Path, arch: str) -> list[str]:
    """The command prefix that runs `binary` here: itself, or under qemu for arm64."""
    return [str(binary)] if arch == "host" else ["qemu-aarch64-static", str(binary)]


def run_env(arch: str) -> dict[str, str]:
    env = dict(os.environ)
    if arch == "arm64":
        env["QEMU_LD_PREFIX"] = str(ARM64_SYSROOT)
    return env
