"""The semi-dual objective of quadratic optimal transport, with an exact convex conjugate.

For a convex potential psi whose gradient maps P to Q (Brenier), psi minimises

    J(psi) = E_P[psi(x)] + E_Q[psi*(y)],   psi*(y) = max_x <x, y> - psi(x),

and W2^2/2 = E_P|x|^2/2 + E_Q|y|^2/2 - min J. The maximiser of the conjugate is
x_hat(y) = (grad psi)^{-1}(y), and by the envelope theorem the gradient of psi*(y) in the
network's parameters is -d psi(x_hat)/d theta with x_hat held fixed. So one step needs
x_hat for a batch of Q samples (solved here by damped Newton on grad psi(x) = y, with the
model's symmetric positive-definite Jacobian), then the loss

    mean_x psi(x) - mean_y psi(x_hat(y))   (+ <x_hat, y>, constant in theta).

Why this objective: it uses samples of P and Q only, its minibatch gradient is unbiased
(no minibatch-OT bias, unlike a Sinkhorn loss between two batches), it needs no second
network and no minimax, and it has the Brenier map as its unique minimiser among convex
potentials. Monotone gradient networks make the conjugate cheap: their Jacobian is
analytic and positive definite, so Newton's method is well posed at every point.

Cost. Solved afresh from the linear part's inverse, the conjugate took 10 damped Newton
steps per batch (the cap, never the tolerance, once the map had left its linear start) and
80 % of the training time. ConjugatePool keeps Q's samples with their solutions between
steps: warm-started, a batch needs 2 to 4 steps (the small profile caps them at 3), and a
step costs 3 to 4 times less for the same L2-UVP (C-MGN, D = 8, 300 steps: 9.4 % in 7 s of
CPU against 9.4 % in 21 s). A
debiased Sinkhorn loss on the pushforward (geomloss, blur annealed 0.5 -> 0.05) reached
about the same L2-UVP per step (9.0 % at D = 8, 300 steps) at 7 times the cost per step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch
from tqdm import tqdm

from echocem.generative.gaussians import sqrtm_psd

Tensor = torch.Tensor


class ConvexGradientMap(Protocol):
    """What the objective needs of a model: T(x) = grad psi(x), its Jacobian (the Hessian of
    psi, SPD), the difference of the potential between paired points, and a linear part
    (V^T V + eps I) x + b whose inverse starts the conjugate solve."""

    linear: torch.nn.Module

    def __call__(self, x: Tensor) -> Tensor: ...

    def jacobian(self, x: Tensor) -> Tensor: ...


PotentialGap = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class ConjugateStats:
    iterations: int
    max_residual: float  # max |grad psi(x_hat) - y| over the batch
    max_relative_residual: float  # max |grad psi(x_hat) - y| / (1 + |y|): the scale the tolerance uses


class TrainingDiverged(RuntimeError):
    """A semi-dual run stopped because it diverged: its map is not worth scoring or keeping."""

    def __init__(self, desc: str, step: int, reason: str) -> None:
        super().__init__(f"{desc}: diverged at step {step}: {reason}")
        self.step, self.reason = step, reason


def solve_conjugate(model: ConvexGradientMap, y: Tensor, x0: Tensor, max_iter: int = 20,
                    tol: float = 1e-4, halvings: int = 8, rescue_iter: int = 0,
                    rescue_factor: float = 10.0) -> tuple[Tensor, ConjugateStats]:
    """x with grad psi(x) = y, row by row: damped Newton from x0 (no graph kept).

    The Newton direction solves J(x) d = grad psi(x) - y with J SPD (Cholesky); each row
    takes the longest of the steps 1, 1/2, ..., 2^-halvings that lowers its residual norm (a
    descent direction of |grad psi - y|^2, so backtracking makes Newton converge from far
    starts). Rows stop once |grad psi(x) - y| <= tol (1 + |y|); only unfinished rows cost.
    After max_iter steps, the rows still above rescue_factor times that tolerance (far from
    solved, e.g. a stale warm start) go on for up to rescue_iter more steps.
    """
    with torch.no_grad():
        x = x0.detach().clone()
        y = y.detach()
        r = model(x) - y
        rn = r.norm(dim=1)
        target = tol * (1.0 + y.norm(dim=1))
        it = 0
        for it in range(1, max_iter + rescue_iter + 1):
            active = (rn > (target if it <= max_iter else rescue_factor * target)).nonzero().squeeze(1)
            if active.numel() == 0:
                it -= 1
                break
            xa, ra, rna, ya = x[active], r[active], rn[active], y[active]
            chol, info = torch.linalg.cholesky_ex(model.jacobian(xa))
            step = torch.cholesky_solve(ra.unsqueeze(-1), chol).squeeze(-1)
            bad = info != 0  # not expected (J is SPD by construction); fall back to the residual
            if bool(bad.any()):
                step[bad] = ra[bad]
            new_x, new_r, new_rn = _backtrack(model, xa, ra, rna, ya, step, halvings)
            x[active], r[active], rn[active] = new_x, new_r, new_rn
        relative = rn / (1.0 + y.norm(dim=1))
        return x, ConjugateStats(it, float(rn.max()) if len(rn) else 0.0,
                                 float(relative.max()) if len(rn) else 0.0)


def _backtrack(model: ConvexGradientMap, xa: Tensor, ra: Tensor, rna: Tensor, ya: Tensor, step: Tensor,
               halvings: int) -> tuple[Tensor, Tensor, Tensor]:
    """Each row takes the longest of the steps 1, 1/2, ..., 2^-halvings along -step that lowers
    its residual norm, or stays put. The full step is tried first (it almost always works near
    the solution); the rows it fails are tried at every shorter step at once, in one forward pass."""
    full = xa - step
    fr = model(full) - ya
    frn = fr.norm(dim=1)
    ok = frn < rna
    new_x, new_r, new_rn = torch.where(ok.unsqueeze(1), full, xa), torch.where(ok.unsqueeze(1), fr, ra), \
        torch.where(ok, frn, rna)
    redo = (~ok).nonzero().squeeze(1)
    if redo.numel() == 0 or halvings < 1:
        return new_x, new_r, new_rn
    t = 0.5 ** torch.arange(1, halvings + 1, dtype=xa.dtype, device=xa.device)                  # (k,)
    trial = xa[redo].unsqueeze(1) - t.view(1, -1, 1) * step[redo].unsqueeze(1)                    # (m, k, d)
    tr = model(trial.reshape(-1, xa.shape[1])).reshape(trial.shape) - ya[redo].unsqueeze(1)
    trn = tr.norm(dim=-1)                                                                         # (m, k)
    better = trn < rna[redo].unsqueeze(1)
    moved = better.any(1)
    pick = better.float().argmax(1)  # the first (longest) step that lowers the residual
    rows = torch.arange(len(redo), device=xa.device)
    idx = redo[moved]
    new_x[idx], new_r[idx], new_rn[idx] = trial[rows, pick][moved], tr[rows, pick][moved], trn[rows, pick][moved]
    return new_x, new_r, new_rn


def linear_start(model: ConvexGradientMap, y: Tensor) -> Tensor:
    """Start of the conjugate solve: the inverse of the model's linear part at y."""
    with torch.no_grad():
        return torch.linalg.solve(model.linear.matrix(), (y - model.linear.b).T).T


def dual_value(gap: Tensor, x_hat: Tensor, y: Tensor) -> Tensor:
    """The semi-dual J on the batch: E psi(x) + E [<x_hat, y> - psi(x_hat)] (for the log)."""
    return gap.detach() + (x_hat * y).sum(1).mean()


LR_REFERENCE_DIM = 8  # the learning rates in params are those of D <= 8
INPUT_MATRICES = ("V", "W", "weight")  # parameter names (last part) of the matrices that read x


def param_groups(model: torch.nn.Module, lr: float) -> list[dict]:
    """Adam groups: the matrices that read x (the linear part's V, the MGNs' embeddings W, the
    ICNN's skip weights; each (..., D)) get lr * min(1, sqrt(8 / D)), the rest lr.

    Adam moves every entry by about lr per step whatever its gradient's size, so a D-wide row
    changes by ~lr sqrt(D): the D = 8 rate moves such a matrix ever faster as D grows. The
    rule keeps the change of a row per step independent of D (rates unchanged up to D = 8).
    The muP rule lr * 8 / D was tried first and trained far slower at D = 16 and 32
    (M-MGN, 300 steps at D = 32: L2-UVP 16 % with it, 10 % with this rule).
    """
    dim = model.linear.V.shape[1]
    wide, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            reads_x = name.rsplit(".", 1)[-1] in INPUT_MATRICES and p.ndim >= 2 and p.shape[-1] == dim
            (wide if reads_x else rest).append(p)
    groups = [{"params": rest, "lr": lr}]
    if wide:
        groups.append({"params": wide, "lr": lr * min(1.0, math.sqrt(LR_REFERENCE_DIM / dim))})
    return groups


def lr_factor(step: int, steps: int, warmup: float = 0.0) -> float:
    """Learning-rate multiplier at `step` of `steps`: a linear warm-up over the first fraction
    `warmup` of the steps (from 1/w to 1, w = its number of steps), then a cosine decay to 1/100.

    Why the warm-up: Adam's first steps move every parameter by about the full rate whatever its
    gradient, and the conjugate points of the pool (ConjugatePool) lag behind a map that moves
    that fast; without it the C-MGN's objective spiked within 20 steps at lr 0.1 and never
    recovered (D = 8, 300 steps: L2-UVP 19 % without a warm-up, 6 % with 10 % of the steps), and
    the warm-up lets every network train at 2 to 4 times the rate.
    """
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"lr_factor: warmup must be a fraction in [0, 1), got {warmup}")
    w = int(round(warmup * steps))
    if step < w:
        return (step + 1) / w
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min((step - w) / max(steps - w, 1), 1.0)))


class ConjugatePool:
    """A pool of Q samples drawn once, each with its conjugate point kept between steps.

    The conjugate x_hat(y) = (grad psi)^-1(y) moves little from one step to the next, so a
    point solved at an earlier visit is a far better start than the inverse of the linear
    part: from it one or two Newton steps reach the tolerance that ten damped steps from the
    linear start did not always reach (the solve is amortised over the visits; a row left
    unsolved at the cap goes on from where it stopped at its next visit). Batches are drawn
    without replacement, a fresh permutation each pass. P stays an endless stream of fresh
    samples; Q is this empirical sample of n points, so n should grow with the number of draws
    (steps x batch): about 10 visits per point cost nothing measurable (M-MGN, D = 16, 1000
    steps of 512: L2-UVP 2.42 % with n = 8192, 62 visits each; 2.26 % with n = 65536, 8 visits).
    """

    def __init__(self, model: ConvexGradientMap, sample_q: Callable[[int], Tensor], n: int,
                 generator: torch.Generator) -> None:
        if n < 1:
            raise ValueError(f"ConjugatePool: n must be >= 1, got {n}")
        self.y = sample_q(int(n)).detach()
        self.x = linear_start(model, self.y)
        self.gen = generator
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def __len__(self) -> int:
        return len(self.y)

    def indices(self, batch: int) -> Tensor:
        """The next `batch` pool indices (a new random pass when the current one runs out)."""
        if batch > len(self):
            raise ValueError(f"ConjugatePool: batch {batch} exceeds the pool's {len(self)} samples")
        if self._pos + batch > len(self._order):
            self._order, self._pos = torch.randperm(len(self), generator=self.gen), 0
        idx = self._order[self._pos:self._pos + batch].to(self.y.device)
        self._pos += batch
        return idx


# Pooled solves: the rows a batch's newton_iter steps leave 10x above the tolerance get up to
# this many more (few rows, so little cost). Without it a C-MGN at D = 16 (1000 steps of lr 0.1,
# pool 65536) kept rows with residuals of 10 to 90 (stale starts on a map grown steep) and
# diverged on 2 seeds of 3 (L2-UVP 474 % and 79 %, the third 1.4 %); with it the same two seeds
# reached 1.30 % and 1.27 % in the same time. (An unsolved row's term <x_hat, y> - psi(x_hat)
# is only a lower bound of psi*(y), which the optimiser can exploit.)
RESCUE_ITER = 20


# When a run is stopped as diverged: J not finite, or the conjugate solves of DIVERGED_PATIENCE
# batches in a row leaving a row off by more than ten times its own scale (|grad psi(x_hat) - y| >
# 10 (1 + |y|)). Healthy runs end near the tolerance (MGNs at D = 32 and 64: absolute residuals 0.01
# to 0.1, |y| about 8 at D = 64); a C-MGN at D = 64 that went on to score 26 % passed through 7.5 at
# step 250. The semi-dual ICNN at D = 64 (1,000 steps) had 0.1 at step 250, 2e5 at step 500 and 2e7
# at the end: the unsolved rows only bound psi* from below, J fell without limit (41 to -5.5e7), and
# its 1,651 s bought an L2-UVP of 9e13 %.
DIVERGED_RESIDUAL = 10.0
DIVERGED_PATIENCE = 10


def train_semidual(model: ConvexGradientMap, potential_gap: PotentialGap, sample_p: Callable[[int], Tensor],
                   sample_q: Callable[[int], Tensor], steps: int, batch: int, lr: float,
                   newton_iter: int = 20, newton_tol: float = 1e-4, pool: int = 0,
                   generator: torch.Generator | None = None, warmup: float = 0.0, desc: str = "semi-dual",
                   log_every: int = 0, log: Callable[[str], None] | None = None,
                   diverged_residual: float = DIVERGED_RESIDUAL, patience: int = DIVERGED_PATIENCE) -> list[float]:
    """Minimise the semi-dual: Adam (param_groups), learning rate lr * lr_factor (warm-up fraction
    `warmup`, then cosine to lr/100), a fresh batch of P each step.

    Raises TrainingDiverged as soon as J is not finite or `patience` batches in a row leave a
    conjugate row with a relative residual above `diverged_residual` (see DIVERGED_RESIDUAL).

    Q: with `pool` = 0, a fresh batch each step and its conjugate solved from the linear
    start (up to newton_iter damped Newton steps); with `pool` = n > 0, batches of a
    ConjugatePool of n samples (drawn from `sample_q` once, permuted with `generator`), each
    solve warm-started at the point its sample reached before, newton_iter steps at most.
    `potential_gap(x, x_hat)` must return mean psi(x) - mean psi(x_hat), differentiable in
    the parameters. Returns the batch values of J, one per step.
    """
    opt = torch.optim.Adam(param_groups(model, lr), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup))
    q_pool = None
    if pool:
        q_pool = ConjugatePool(model, sample_q, pool, generator if generator is not None else torch.Generator())
    history: list[float] = []
    iters = far = 0
    for step in tqdm(range(steps), desc=desc, leave=False, mininterval=5.0):
        x = sample_p(batch)
        if q_pool is None:
            y = sample_q(batch)
            x0 = linear_start(model, y)
        else:
            idx = q_pool.indices(batch)
            y, x0 = q_pool.y[idx], q_pool.x[idx]
        x_hat, stats = solve_conjugate(model, y, x0, newton_iter, newton_tol,
                                       rescue_iter=RESCUE_ITER if q_pool is not None else 0)
        if q_pool is not None:
            q_pool.x[idx] = x_hat
        iters += stats.iterations
        opt.zero_grad(set_to_none=True)
        gap = potential_gap(x, x_hat)
        gap.backward()
        opt.step()
        sched.step()
        history.append(float(dual_value(gap, x_hat, y)))
        relative = stats.max_relative_residual
        far = far + 1 if not relative <= diverged_residual else 0  # a NaN residual counts as far
        if not math.isfinite(history[-1]):
            raise TrainingDiverged(desc, step + 1, f"the semi-dual J is {history[-1]}")
        if far >= patience:
            raise TrainingDiverged(desc, step + 1, f"{far} batches in a row left a conjugate point with a "
                                                   f"relative residual above {diverged_residual:g} (last "
                                                   f"{relative:.3g})")
        if log is not None and log_every and ((step + 1) % log_every == 0 or step + 1 == steps):
            log(f"{desc}: step {step + 1}/{steps} J={history[-1]:.5f} newton_iter/step={iters / (step + 1):.1f}"
                f" residual={stats.max_residual:.1e}")
    return history


def stratified_points(n: int, k: int, generator: torch.Generator, dtype: torch.dtype, device) -> Tensor:
    """k points per row in [0, 1], one uniformly in each of k equal strata: (n, k)."""
    u = torch.rand(n, k, generator=generator, dtype=torch.float64)
    return ((torch.arange(k, dtype=torch.float64) + u) / k).to(device, dtype)


def line_integral_gap(field: Callable[[Tensor], Tensor], x: Tensor, x_hat: Tensor, generator: torch.Generator,
                      points: int = 1) -> Tensor:
    """Unbiased estimate of mean_i [phi(x_i) - phi(x_hat_i)] from the gradient field of phi alone.

    phi(x) - phi(x_hat) = int_0^1 <grad phi(x_hat + s (x - x_hat)), x - x_hat> ds for any
    gradient field; s is drawn by stratified sampling (`points` strata), so the estimate
    and its parameter gradient are unbiased whatever the smoothness along the segment.
    """
    delta = x - x_hat
    s = stratified_points(len(x), points, generator, x.dtype, x.device)           # (n, k)
    pts = x_hat.unsqueeze(1) + s.unsqueeze(-1) * delta.unsqueeze(1)               # (n, k, d)
    g = field(pts.reshape(-1, x.shape[1])).reshape(len(x), points, -1)
    return (g * delta.unsqueeze(1)).sum(-1).mean()


def init_linear_part(linear: torch.nn.Module, matrix, offset) -> None:
    """Set a (V^T V + eps I) x + b part to a given SPD matrix and offset (e.g. the Bures map)."""
    eps = float(getattr(linear, "eps", 0.0))
    m = np.asarray(matrix, dtype=np.float64)
    w, _ = np.linalg.eigh(m)
    if w.min() <= eps:
        raise ValueError(f"init_linear_part: the matrix's smallest eigenvalue {w.min():.3g} is <= eps {eps:g}")
    with torch.no_grad():
        linear.V.copy_(torch.as_tensor(sqrtm_psd(m - eps * np.eye(len(m))), dtype=linear.V.dtype))
        linear.b.copy_(torch.as_tensor(np.asarray(offset), dtype=linear.b.dtype))

