"""The short fine-tune an extracted sub-network gets: before it ships (`supernet evaluate`) and before the
rank check compares it with its shared-weight self (`supernet rank-check`). One loop for both, so the two
measure the same thing: the supernet's target (supernet_train.base_target), temporal layers at `lr`, the
rest at `lr` x `backbone_lr_scale`."""
from __future__ import annotations

import torch

from export.nas.supernet_train import SupernetTrainConfig, apply_gradients, base_target, rf_batch
from export.train.loop import TrainLoop


def finetune_extracted(unet: torch.nn.Module, base: torch.nn.Module, pool: torch.Tensor, prompts: list[str],
                       text_encoder, tokenizer, timesteps: torch.Tensor, cfg: SupernetTrainConfig, steps: int,
                       seed: int) -> None:
    """Train `unet` (an extracted sub-network) in place for `steps` on the pool at `timesteps`."""
    temporal = list(unet.temporal.parameters())
    rest = [p for name, p in unet.named_parameters() if not name.startswith("temporal.")]
    rates = {"opt": (temporal, cfg.lr), "backbone": (rest, cfg.lr * cfg.backbone_lr_scale)}
    rates = {name: (params, lr) for name, (params, lr) in rates.items() if params}  # a plan may have no temporal layer
    opts = {name: torch.optim.AdamW(params, lr=lr, weight_decay=0.0) for name, (params, lr) in rates.items()}
    loop = TrainLoop(None, {"unet": unet}, opts, ("loss",), steps=steps,
                     lr={name: (lr, cfg.lr_warmup) for name, (_, lr) in rates.items()}, seed=seed, progress=False)

    def step(i: int, g: torch.Generator) -> dict[str, float]:
        xt, t, hidden, velocity = rf_batch(pool, prompts, text_encoder, tokenizer, timesteps, cfg.batch_size, g)
        target = base_target(base, xt, t, hidden, velocity, cfg.base_target_weight)
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)
        loss = torch.mean((unet(xt, t, hidden) - target) ** 2)
        loss.backward()
        apply_gradients(list(opts.values()), temporal + rest)
        return {"loss": loss.item()}

    unet.train()
    loop.run(step)
    unet.eval()
