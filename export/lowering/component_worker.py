"""Lower one component in a process of its own (`mobile-sdk export --low-memory`).

The parent saved each method's torch.export program (.pt2, in the package's own temporary folder, written
moments before: trusted) and released its weights, so this process holds one component's weights and
the lowering's copies of them, nothing else. Once it exits, all of that memory is back.

    python -m export.lowering.component_worker JOB.json
    JOB = {"programs": {method: .pt2 path}, "out": .pte path, "report": delegation JSON path,
           "quantize": "none" | "int8", "quiet": bool}
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def file_backed_weights(program, scratch: Path) -> None:
    """Swaps `program`'s weights for copy-on-write maps of a file (safetensors, unlinked once mapped).

    Lowering reads each weight once, to serialize it for XNNPACK, and keeps the program (and so its
    weights) to the end. Mapped from a file, those weights are page cache the kernel can drop under
    memory pressure, instead of memory it cannot (2.4 GB in the 0.6B UNet's worker). A storage shared by
    several tensors is mapped once if they are one contiguous view of it (tied weights stay tied), and left
    in memory otherwise."""
    import torch
    from safetensors.torch import load_file, save_file

    by_storage: dict[int, list[tuple[dict, str, torch.Tensor]]] = {}
    for tensors in (program.state_dict, program.constants):
        for name, t in tensors.items():
            if isinstance(t, torch.Tensor):
                by_storage.setdefault(t.untyped_storage().data_ptr(), []).append((tensors, name, t))
    views = {}
    for i, refs in enumerate(by_storage.values()):
        t = refs[0][2]
        same = all(u.dtype == t.dtype and u.shape == t.shape and u.stride() == t.stride()
                   and u.storage_offset() == t.storage_offset() for _, _, u in refs)
        if same and t.is_contiguous():
            views[str(i)] = refs
    if not views:
        return
    save_file({key: refs[0][2].detach() for key, refs in views.items()}, str(scratch))
    mapped = load_file(str(scratch))
    scratch.unlink()  # the maps keep the data until they go
    for key, refs in views.items():
        for tensors, name, t in refs:
            tensors[name] = (torch.nn.Parameter(mapped[key], requires_grad=t.requires_grad)
                             if isinstance(t, torch.nn.Parameter) else mapped[key])


def run(job: dict) -> None:
    import importlib

    import torch

    from export.lowering.executorch import lower_exported, write_program

    if job["quantize"] == "int8":  # registers the quantize/dequantize ops an int8 program holds
        importlib.import_module("torchao.quantization.pt2e.quantize_pt2e")
    exported = {}
    for name, path in job["programs"].items():
        exported[name] = torch.export.load(path)
        Path(path).unlink()
        file_backed_weights(exported[name], Path(path).with_suffix(".safetensors"))
    program, delegation = lower_exported(exported, log=lambda s: print(s, flush=True))
    del exported
    write_program(program, job["out"])
    Path(job["report"]).write_text(json.dumps(delegation))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    if job.get("quiet"):
        from mobile_sdk.quiet import quiet_third_party

        quiet_third_party()
    try:
        run(job)
    except Exception as e:  # the parent reports it as one line naming the component
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
