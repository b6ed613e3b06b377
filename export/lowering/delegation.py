"""How much of a lowered program runs inside the delegate (XNNPACK): operators and FLOPs.

FLOPs use one rule for every graph: matmul-class ops (conv, linear, mm, bmm, addmm) count 2 * MACs,
every other op counts one FLOP per output element. Total = the exported program before lowering;
outside = the nodes left in the lowered graph. Ops that stay outside run on slow portable kernels.
"""
from __future__ import annotations

import math
from collections import Counter

import torch

IGNORED = {"getitem", "executorch_call_delegate", "sym_size", "alloc", "_assert_tensor_metadata"}


def op_name(node: torch.fx.Node) -> str:
    target = node.target
    parts = getattr(target, "__name__", str(target)).split(".")
    # edge ops are named "aten.mean.dim", "dim_order_ops._clone_dim_order.default"; aten ops "mean.dim"
    name = parts[1] if len(parts) > 2 else parts[0]
    return name[: -len("_copy")] if name.endswith("_copy") and name not in {"_to_copy"} else name


def _numel(val) -> int:
    if isinstance(val, torch.Tensor):
        return val.numel()
    if isinstance(val, (list, tuple)):
        return sum(_numel(v) for v in val)
    return 0


def node_flops(node: torch.fx.Node) -> int:
    name = op_name(node)
    out = node.meta.get("val")
    def shape(i):
        v = node.args[i].meta.get("val") if isinstance(node.args[i], torch.fx.Node) else None
        return tuple(v.shape) if v is not None else None
    try:
        if name in {"convolution", "conv2d"}:
            w = shape(1)  # [out, in / groups, *kernel]: per-output MACs, grouped or not
            return 2 * out.numel() * (w[1] * math.prod(w[2:]))
        if name in {"linear"}:
            w = shape(1)
            return 2 * out.numel() * w[1]
        if name in {"mm", "bmm", "matmul"}:
            return 2 * out.numel() * shape(0)[-1]
        if name == "addmm":
            return 2 * out.numel() * shape(1)[-1]
    except (TypeError, IndexError, AttributeError):
        pass
    return _numel(out)


def _counted(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and op_name(node) not in IGNORED


def graph_flops(gm: torch.fx.GraphModule) -> int:
    return sum(node_flops(n) for n in gm.graph.nodes if _counted(n))


def delegation_report(exported: torch.export.ExportedProgram, lowered_gm: torch.fx.GraphModule) -> dict:
    """Operator and FLOP fractions inside the delegate, and which ops stayed outside (with counts)."""
    total_ops = sum(1 for n in exported.graph_module.graph.nodes if _counted(n))
    total_flops = graph_flops(exported.graph_module)
    outside = [n for n in lowered_gm.graph.nodes if _counted(n)]
    delegates = sum(1 for n in lowered_gm.graph.nodes if n.op == "call_function" and op_name(n) == "executorch_call_delegate")
    outside_ops = Counter(op_name(n) for n in outside)
    outside_flops = sum(node_flops(n) for n in outside)
    return {
        "delegate": "XnnpackBackend",
        "delegated_subgraphs": delegates,
        "ops_total": total_ops,
        "ops_outside": len(outside),
        "op_fraction_delegated": round(1 - len(outside) / max(1, total_ops), 4),
        "flops_total": total_flops,
        "flops_outside": outside_flops,
        "flop_fraction_delegated": round(1 - outside_flops / max(1, total_flops), 6),
        "ops_outside_by_type": dict(outside_ops.most_common()),
    }
