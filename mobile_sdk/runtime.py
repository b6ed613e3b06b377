"""Host runtimes for packages: the package's ExecuTorch programs behind the same call signatures as
the eager modules, so VideoPipeline runs them with the same loop (one loop, two backends).

Programs are exported for batch 1; batched calls are split and re-joined here.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .config import SchedulerConfig, model_config_from_dict
from .errors import SDKError
from .models.text_encoder import tokenizer_from_dict
from .package import COMPONENTS, MANIFEST, Package, PackageError, open_package
from .pipeline import VideoPipeline
from .quiet import native_stderr_quiet


def check_program_header(path: Path) -> None:
    """What can be checked before ExecuTorch sees the bytes (it aborts the process on some garbage): the
    flatbuffer identifier `ETnn` at offset 4 and, when present, the extended header's sizes."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
        size = path.stat().st_size
    except OSError as e:
        raise PackageError(f"{path}: cannot read the program ({e.strerror})") from None
    if len(head) < 8 or head[4:6] != b"ET" or not head[6:8].isdigit():
        raise PackageError(f"{path}: ExecuTorch cannot load this program: not an ExecuTorch program "
                           f"(no 'ETnn' identifier in its header)")
    if head[8:12] == b"eh00" and len(head) >= 32:
        program_size = int.from_bytes(head[16:24], "little")
        segment_base = int.from_bytes(head[24:32], "little")
        if program_size > size or segment_base > size:
            raise PackageError(f"{path}: ExecuTorch cannot load this program: its header says "
                               f"{max(program_size, segment_base)} bytes, the file has {size} (truncated?)")


class ExecuTorchProgram:
    """One .pte file, its methods loaded on first use."""

    def __init__(self, path: Path):
        try:
            from executorch.runtime import Runtime
        except ImportError as e:  # pragma: no cover - executorch is a dependency
            raise SDKError(f"the ExecuTorch runtime is not installed ({e})") from None
        self.path = path
        check_program_header(path)
        try:
            with native_stderr_quiet():
                self.program = Runtime.get().load_program(str(path))
        except Exception as e:  # noqa: BLE001 - the runtime raises bare RuntimeErrors
            raise PackageError(f"{path}: ExecuTorch cannot load this program ({e})") from None
        self._methods: dict[str, object] = {}

    def method(self, name: str):
        if name not in self._methods:
            try:
                with native_stderr_quiet():
                    self._methods[name] = self.program.load_method(name)
            except Exception as e:  # noqa: BLE001
                raise PackageError(f"{self.path}: cannot load method {name!r} ({e})") from None
        return self._methods[name]

    def run(self, name: str, *inputs: torch.Tensor) -> list[torch.Tensor]:
        method = self.method(name)
        with native_stderr_quiet():
            return list(method.execute([x.contiguous() for x in inputs]))


def _per_item(fn, *batched: torch.Tensor) -> list[torch.Tensor]:
    """Run a batch-1 program over each batch item and concatenate each output."""
    results = [fn(*(x[i : i + 1] for x in batched)) for i in range(batched[0].shape[0])]
    return [torch.cat(parts) for parts in zip(*results)]


class ETTextEncoder:
    def __init__(self, program: ExecuTorchProgram, method: str):
        self.program, self.method = program, method

    def __call__(self, input_ids: torch.Tensor):
        hidden, pooled = _per_item(lambda ids: self.program.run(self.method, ids), input_ids)
        return hidden, pooled


class ETUNetMethod:
    def __init__(self, program: ExecuTorchProgram, method: str):
        self.program, self.method = program, method

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        (velocity,) = _per_item(lambda *x: self.program.run(self.method, *x), sample, timestep, hidden)
        return velocity


class ETUNet:
    """Picks the method of each step from the manifest's step table."""

    def __init__(self, program: ExecuTorchProgram, step_methods: list[str]):
        self.step_methods = step_methods
        self.views = {m: ETUNetMethod(program, m) for m in dict.fromkeys(step_methods)}

    def for_step(self, step: int) -> ETUNetMethod:
        return self.views[self.step_methods[step]]


class ETDecoder:
    def __init__(self, program: ExecuTorchProgram, method: str, frames_per_call: int):
        self.program, self.method, self.frames_per_call = program, method, frames_per_call

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        n = latents.shape[0]
        if n < self.frames_per_call:  # pad the last chunk to the exported shape
            pad = latents[-1:].expand(self.frames_per_call - n, *latents.shape[1:])
            latents = torch.cat([latents, pad])
        (rgb,) = self.program.run(self.method, latents)
        return rgb[:n]


def pipeline_from_package(package: Package | str | Path, target: str = "executorch", *, num_frames: int | None = None,
                          height: int | None = None, width: int | None = None) -> VideoPipeline:
    """A VideoPipeline whose components are the package's programs for `target`, at the package's size of
    these frames, height and width (those not given: the default size's; Package.size)."""
    pkg = package if isinstance(package, Package) else open_package(package)
    if target != "executorch":
        raise SDKError(f"target {target!r} cannot run on this host; the host runtime runs 'executorch' packages")
    if target not in pkg.manifest["targets"]:
        raise PackageError(f"{pkg.root / MANIFEST}: the package has no {target!r} target (it has: {', '.join(pkg.targets)})")
    m = pkg.manifest
    size = pkg.size(num_frames, height, width)
    video, steps = size["video"], size["steps"]
    config = model_config_from_dict(m["model"]["config"], f"{pkg.root / MANIFEST}: model.config")
    config = dataclasses.replace(config, num_frames=video["num_frames"], height=video["height"], width=video["width"],
                                 guidance_scale=m["scheduler"].get("guidance_scale", 1.0),
                                 scheduler=SchedulerConfig(num_inference_steps=len(steps),
                                                           timesteps=tuple(s["timestep"] for s in steps)))
    _check_declared(pkg, target, "unet", {s["unet_method"] for s in steps})
    _check_declared(pkg, target, "vae_decoder", {size["vae_decoder_method"]})
    programs = {c: ExecuTorchProgram(pkg.path(pkg.component(target, c)["file"])) for c in COMPONENTS}
    text_method = pkg.single_method(target, "text_encoder")
    decoder_input = pkg.component(target, "vae_decoder")["methods"][size["vae_decoder_method"]]["inputs"][0]
    pipe = VideoPipeline(
        config,
        ETTextEncoder(programs["text_encoder"], text_method),
        ETUNet(programs["unet"], [s["unet_method"] for s in steps]),
        ETDecoder(programs["vae_decoder"], size["vae_decoder_method"], decoder_input["shape"][0]),
        tokenizer_from_dict(pkg.tokenizer_spec()),
        trained=m["model"].get("trained", True),
    )
    pipe.fixed_size = (config.num_frames, config.height, config.width)
    pipe.fixed_steps = len(steps)
    pipe.package = pkg  # keep the (possibly extracted) package alive as long as the pipeline
    return pipe


def _check_declared(pkg: Package, target: str, component: str, methods: set[str]) -> None:
    component_spec = pkg.component(target, component)
    missing = sorted(methods - set(component_spec["methods"]))
    if missing:
        raise PackageError(f"{pkg.root / MANIFEST}: the size's steps or decoder name {component} method(s) "
                           f"{', '.join(missing)} that {component_spec['file']} does not declare")
