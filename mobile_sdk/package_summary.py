"""What a package holds: components per target, sizes, plans per step, parity and delegation."""
from __future__ import annotations

from .package import Package, format_size, size_key


def package_summary(pkg: Package) -> dict:
    m = pkg.manifest
    targets = {}
    for target, t in m["targets"].items():
        comps = {}
        for name, c in t["components"].items():
            files = [c["file"]] if c.get("file") else [link["file"] for link in c.get("chain") or []]
            comps[name] = {
                "files": files,
                "bytes": sum(f["bytes"] for rel, f in m["files"].items()
                             if any(rel == x or rel.startswith(x + "/") for x in files)),
                # Core ML: functions, sorted (the spec's map keeps no order)
                "methods": list(c["methods"]) if "methods" in c else sorted(c.get("functions") or []),
                "quantization": c.get("quantization") or c.get("compression"),
                "palettization": c.get("palettization"),
                "delegation": {k: {"op_fraction_delegated": d["op_fraction_delegated"],
                                   "flop_fraction_delegated": d["flop_fraction_delegated"]}
                               for k, d in c.get("delegation", {}).items()},
            }
        targets[target] = {"components": comps, "parity": t.get("parity"),
                           "palettization_check": t.get("palettization_check")}
    return {
        "path": str(pkg.root),
        "schema_version": m["schema_version"],
        "sdk_version": m["sdk_version"],
        "tools": m["tools"],
        "model": {k: m["model"][k] for k in ("name", "preset", "description", "trained")},
        "video": m["video"],
        "steps": m["steps"],
        "sizes": [format_size(size_key(s)) for s in m.get("sizes") or [{"video": m["video"]}]],
        "temporal_plans": {k: _counts(v) for k, v in m["temporal_plans"].items()},
        "unet_methods": m.get("unet_methods", {}),
        "targets": targets,
        "latency_table": m.get("latency_table"),
        "test_vectors": sorted(m["test_vectors"]),
    }


def _counts(plan: dict) -> dict:
    out: dict[str, int] = {}
    for op in plan.values():
        out[op] = out.get(op, 0) + 1
    return out


def format_package_summary(s: dict) -> str:
    v = s["video"]
    lines = [
        f"package {s['path']} (schema {s['schema_version']}, SDK {s['sdk_version']}, "
        + ", ".join(f"{k} {val}" for k, val in s["tools"].items()) + ")",
        f"model {s['model']['name']} (preset {s['model']['preset']}, {'trained' if s['model']['trained'] else 'random weights'}): "
        f"{s['model']['description']}",
        f"video {v['width']}x{v['height']}, {v['num_frames']} frames at {v['fps']} fps",
        "steps: " + ", ".join(f"t={st['timestep']:.3g} dt={st['dt']:.3g} -> {st['unet_method']}" for st in s["steps"]),
    ]
    lines.append(f"sizes (frames x height x width): {s['sizes'][0]} (default)" + "".join(f", {z}" for z in s["sizes"][1:]))
    for name, counts in s["temporal_plans"].items():
        lines.append(f"plan {name}: " + ", ".join(f"{op} x{n}" for op, n in sorted(counts.items())))
    for name, u in s["unet_methods"].items():
        n = u["subnet"]
        lines.append(f"unet {name}: plan {u['temporal_plan']}, widths {n['widths']}, up blocks {n['up_blocks']}, "
                     f"transformer depths {n['transformer_depths']}, mid block {n['mid_block']}, "
                     f"{u['flops_per_call'] / 1e6:.1f} MFLOPs per call")
    for target, t in s["targets"].items():
        lines.append(f"target {target}:")
        for name, c in t["components"].items():
            deleg = "; ".join(f"{m}: {d['op_fraction_delegated']:.1%} ops / {d['flop_fraction_delegated']:.2%} FLOPs delegated"
                              for m, d in c["delegation"].items())
            pal = c.get("palettization")
            bits = f" ({pal['average_bits']:.2f} bits: {bit_shares(pal['elements_by_bits'])})" if pal else ""
            methods = ", ".join(c["methods"]) if c["methods"] else f"chain of {len(c['files'])} models"
            lines.append(f"  {name:<13} {c['bytes'] / 1e6:8.2f} MB  quant {c['quantization']}{bits}  methods {methods}"
                         + (f"  [{deleg}]" if deleg else ""))
        parity, check = t.get("parity"), t.get("palettization_check")
        if parity:
            comps = ", ".join(f"{k} {val:.1f} dB" for k, val in parity["components"].items())
            lines.append(f"  parity: {comps}; 4-step frames {parity['pipeline_frames_db']:.1f} dB{_frames_of(parity, v)}")
        elif target == "coreml":
            lines.append("  parity: Core ML runs on macOS and devices only (tests/test_coreml.py, the iOS replay tests)")
        else:
            lines.append("  parity: not checked (export with --check)")
        if check:
            comps = ", ".join(f"{k} {val:.1f} dB" for k, val in check["components"].items())
            lines.append(f"  palettized weights in PyTorch against fp32: {comps}; "
                         f"4-step frames {check['pipeline_frames_db']:.1f} dB{_frames_of(check, v)}")
    table = s.get("latency_table")
    lines.append(f"latency table: {table['provenance'] if table else 'none'}")
    lines.append(f"test vectors: {', '.join(s['test_vectors'])}")
    return "\n".join(lines)


def _frames_of(check: dict, video: dict) -> str:
    """' (frames 0, 5, 10, 15 of 16)' where the check decoded only some frames of the video."""
    frames = check.get("checked_frames")
    if frames is None or len(frames) == video["num_frames"]:
        return ""
    return f" (frames {', '.join(map(str, frames))} of {video['num_frames']})"


def bit_shares(elements_by_bits: dict[str, int]) -> str:
    """'2-bit 7.0%, 3-bit 48.2%, ...': each width's share of a palettized component's elements (the export
    log and `inspect` both print it)."""
    total = max(1, sum(elements_by_bits.values()))
    return ", ".join(f"{b}-bit {n / total:.1%}" for b, n in elements_by_bits.items())
