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
