"""Training loops for monotone gradient networks: minibatch Adam with a cosine learning
rate, fresh source samples each step (the source is a known sampler), progress on stderr."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

Sampler = Callable[[int], torch.Tensor]


def _optimise(model: nn.Module, loss_fn: Callable[[int], torch.Tensor], steps: int, lr: float,
              desc: str) -> list[float]:
    """Adam + cosine decay to lr/100; returns the loss history (one float per step)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(s / max(steps, 1), 1.0))))
    history = []
    for step in tqdm(range(steps), desc=desc, leave=False, mininterval=2.0):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(step)
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
    return history


def train_sinkhorn(model: nn.Module, source: Sampler, target: torch.Tensor, steps: int, batch: int,
                   lr: float, blur: float, scaling: float, generator: torch.Generator,
                   desc: str = "sinkhorn") -> list[float]:
    """Minimise S_eps(T#source, target) on minibatches (fresh source draws, random target rows)."""
    from echocem.generative.losses import sinkhorn_divergence

    def loss_fn(_: int) -> torch.Tensor:
        idx = torch.randint(len(target), (min(batch, len(target)),), generator=generator).to(target.device)
        return sinkhorn_divergence(model(source(batch)), target[idx], blur, scaling)

    return _optimise(model, loss_fn, steps, lr, desc)


def train_likelihood(model: nn.Module, source: Sampler, target_logpdf: Callable[[torch.Tensor], torch.Tensor],
                     steps: int, batch: int, lr: float, desc: str = "likelihood") -> list[float]:
    """Minimise mean[-log q(T(x)) - log det J_T(x)], x ~ source (Monge-Ampere / likelihood loss)."""
    from echocem.generative.losses import likelihood_loss

    return _optimise(model, lambda _: likelihood_loss(model, source(batch), target_logpdf), steps, lr, desc)


def train_regression(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float,
                     lbfgs_steps: int, desc: str = "regression") -> list[float]:
    """Full-batch MSE fit of model(x) to y: Adam, then L-BFGS to polish (smooth, small problem)."""
    history = _optimise(model, lambda _: ((model(x) - y) ** 2).mean(), steps, lr, desc)
    if lbfgs_steps > 0:
        opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=lbfgs_steps, history_size=50,
                                tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            return loss

        opt.step(closure)
        history.append(float(closure().detach()))
    return history
