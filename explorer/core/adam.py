"""Adam without ``torch.optim``: the same update, but no ``torch._dynamo`` import.

Why: constructing any ``torch.optim.Optimizer`` imports ``torch._dynamo`` (its methods are
wrapped in ``torch._disable_dynamo``, which imports it on first call). That import costs
~0.85 s of CPU, which sits on the learner's path from its start to its first published
weights, so every actor waits for it; on a 2-core machine it is ~8% of the time to solve
MiniGrid-KeyCorridorS3R1 (``benchmarks/time_to_solve.py``). The update below is
``torch.optim.Adam``'s default single-tensor update (no amsgrad, no weight decay) op for
op, written with ``torch._foreach_*`` (one call per op for all parameters). On CPU it is
bit-identical to ``torch.optim.Adam`` (``tests/explorer/test_adam.py``), and ``state_dict`` has
``torch.optim.Adam``'s layout, so checkpoints load either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class LightAdam:
    """Adam (Kingma & Ba) over one parameter group; ``lr`` may be changed between steps.

    Args:
        params: the parameters to train (their order is the order of ``state_dict``).
        lr: learning rate.
        betas: decay rates of the first and second moment estimates.
        eps: added to the denominator for numerical stability.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("LightAdam got an empty parameter list")
        if lr < 0.0 or eps < 0.0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"LightAdam: invalid lr={lr}, betas={betas} or eps={eps}")
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        #: updates per parameter (a parameter without a gradient is not updated, as in torch)
        self.steps = [0] * len(self.params)
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format)
                         for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format)
                            for p in self.params]

    def zero_grad(self) -> None:
        """Drop every gradient (``set_to_none``: the next backward allocates them)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient (the others keep still)."""
        active = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not active:
            return
        params = [self.params[i] for i in active]
        grads = [p.grad for p in params]
        exp_avgs = [self.exp_avgs[i] for i in active]
        exp_avg_sqs = [self.exp_avg_sqs[i] for i in active]
        beta1, beta2 = self.betas
        for i in active:
            self.steps[i] += 1
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, [(1.0 - beta2 ** self.steps[i]) ** 0.5 for i in active])
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom,
                                [-self.lr / (1.0 - beta1 ** self.steps[i]) for i in active])

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Adam``'s layout: per-parameter moments and step, one group."""
        state = {i: {"step": torch.tensor(float(steps)), "exp_avg": self.exp_avgs[i].clone(),
                     "exp_avg_sq": self.exp_avg_sqs[i].clone()}
                 for i, steps in enumerate(self.steps) if steps}
        group = {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": 0.0,
                 "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                 "differentiable": False, "fused": None, "decoupled_weight_decay": False,
                 "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` or from a ``torch.optim.Adam`` one."""
        groups = saved.get("param_groups")
        if not isinstance(groups, list) or len(groups) != 1:
            raise ValueError("optimizer state: expected exactly one parameter group, got "
                             f"{None if groups is None else len(groups)}")
        group = groups[0]
        if len(group["params"]) != len(self.params):
            raise ValueError(f"optimizer state: {len(group['params'])} parameters saved, "
                             f"the model has {len(self.params)}")
        if group.get("amsgrad") or group.get("weight_decay"):
            raise ValueError("optimizer state: amsgrad / weight decay are not supported")
        self.lr = float(group["lr"])
        self.betas = (float(group["betas"][0]), float(group["betas"][1]))
        self.eps = float(group["eps"])
        state = saved["state"]
        for position, key in enumerate(group["params"]):
            entry = state.get(key)
            param = self.params[position]
            if entry is None:  # never had a gradient
                self.steps[position] = 0
                self.exp_avgs[position].zero_()
                self.exp_avg_sqs[position].zero_()
                continue
            for name, moments in (("exp_avg", self.exp_avgs), ("exp_avg_sq", self.exp_avg_sqs)):
                if entry[name].shape != param.shape:
                    raise ValueError(f"optimizer state: parameter {position} {name} has shape "
                                     f"{tuple(entry[name].shape)}, the model's is "
                                     f"{tuple(param.shape)}")
                moments[position].copy_(entry[name])
            self.steps[position] = int(float(entry["step"]))
