"""Per-op breakdown of one UNet call from the entries' ETDumps (ExecuTorch devtools Inspector).

The XNNPACK delegate in the executorch wheel reports each of its operators (e.g. "Convolution (NHWC,
F32) IGEMM", "Transpose (ND, X32)"), so the breakdown shows both where compute goes and how much time
layout changes (transposes, copies) take. Each entry's ops are weighted by how often the entry occurs
in the plan. Written as CSV, PNG and a self-contained HTML page.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import re
from collections import defaultdict
from pathlib import Path

from mobile_sdk.atomic import atomic_file

_INSTANCE = re.compile(r"\s*#\d+$")


def etdump_events(etdump: Path) -> list[tuple[str, float]]:
    """(event name without its "#N" instance suffix, mean ms over the trace) of each timed event of a traced
    execution, in order: the method, the delegate calls and XNNPACK's operators."""
    import warnings

    from executorch.devtools import Inspector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inspector = Inspector(etdump_path=str(etdump))
    return [(_INSTANCE.sub("", e.name), float(sum(e.perf_data.raw)) / len(e.perf_data.raw))
            for block in inspector.event_blocks if block.name == "Execute" for e in block.events if e.perf_data is not None]


def op_times(etdump: Path) -> dict[str, float]:
    """op type -> total ms over one traced execution."""
    totals: dict[str, float] = defaultdict(float)
    delegate_calls = 0.0
    for name, ms in etdump_events(etdump):
        if name == "Method::execute":
            continue
        if name == "DELEGATE_CALL":  # encloses the delegate's own op events
            delegate_calls += ms
        else:
            totals[name] += ms
    delegated = sum(ms for op, ms in totals.items() if "(" in op)  # XNNPACK names carry a layout, "(NC, F32)"
    totals["delegate call (outside XNNPACK ops)"] = max(0.0, delegate_calls - delegated)
    return dict(totals)


def write_breakdown(uses: dict[str, int], etdumps: dict[str, Path], out_dir: str | Path, title: str) -> Path:
    """uses: signature -> occurrences per UNet call; etdumps: signature -> ETDump file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_op: dict[str, float] = defaultdict(float)
    per_entry = []
    for sig, n in uses.items():
        if sig not in etdumps:
            continue
        times = op_times(etdumps[sig])
        for op, ms in times.items():
            per_op[op] += n * ms
        per_entry.append((sig, n, sum(times.values())))
    total = sum(per_op.values()) or 1.0
    ops = sorted(per_op.items(), key=lambda kv: -kv[1])
    with atomic_file(out / "ops.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["op", "ms_per_unet_call", "share"])
        for op, ms in ops:
            w.writerow([op, f"{ms:.5f}", f"{ms / total:.4f}"])
    with atomic_file(out / "entries.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["signature", "uses_per_unet_call", "traced_ms", "ms_per_unet_call"])
        for sig, n, ms in sorted(per_entry, key=lambda r: -r[1] * r[2]):
            w.writerow([sig, n, f"{ms:.5f}", f"{n * ms:.5f}"])
    png = _bar_chart(ops[:20], total, title)
    with atomic_file(out / "breakdown.png") as tmp:
        tmp.write_bytes(png)
    rows = "".join(f"<tr><td>{html.escape(op)}</td><td>{ms:.4f}</td><td>{ms / total:.1%}</td></tr>" for op, ms in ops)
    entry_rows = "".join(f"<tr><td>{html.escape(s)}</td><td>{n}</td><td>{n * ms:.4f}</td></tr>"
                         for s, n, ms in sorted(per_entry, key=lambda r: -r[1] * r[2]))
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}</style>"
            f"<h1>{html.escape(title)}</h1><p>Traced time per UNet call: {total:.3f} ms (one traced run per entry).</p>"
            f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
            f"<h2>By operator</h2><table><tr><th>op</th><th>ms</th><th>share</th></tr>{rows}</table>"
            f"<h2>By table entry</h2><table><tr><th>signature</th><th>uses</th><th>ms</th></tr>{entry_rows}</table>")
    with atomic_file(out / "breakdown.html") as tmp:
        tmp.write_text(page)
    return out / "breakdown.html"


def _bar_chart(ops: list[tuple[str, float]], total: float, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.3 * max(4, len(ops)) + 1))
    names = [op for op, _ in ops][::-1]
    ax.barh(names, [ms for _, ms in ops][::-1])
    ax.set(xlabel="ms per UNet call", title=f"{title} (total traced {total:.3f} ms)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
