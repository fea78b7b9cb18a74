"""Sharpness-aware minimisation for FTD's experts: SAM (Foret et al., ICLR 2021) and GSAM
(Zhuang et al., ICLR 2022), the variant CondTSF's FTD experts use (RafaDD/CondTSF ``buffer.py``,
``gsam/gsam.py``).

SAM, each step: compute the gradient g at w, move to the worst-case neighbour
w + rho * g / ||g|| (``adaptive=True``: ASAM's element-wise scaling, w + rho * w^2 g / ||w g||),
recompute the gradient g_p there, return to w and let the base optimizer step with g_p.
GSAM steps with ``g_p - alpha * (g - cos(g, g_p) * ||g|| * g_p / ||g_p||)`` instead: g_p minus
``alpha`` times the part of g orthogonal to g_p.
"""
import torch

__all__ = ["SAM", "GSAM", "gsam_direction"]


class SAM(torch.optim.Optimizer):
    """Wraps a base optimizer class, e.g. ``SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=5e-4, momentum=0.9)``.

    ``step(closure)`` needs a closure that zeroes the gradients, computes the loss, calls
    ``backward()`` and returns the loss; it is called twice per step. Returns the first loss.
    """

    def __init__(self, params, base_optimizer=torch.optim.SGD, *, rho: float = 0.05, adaptive: bool = False, **kwargs):
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not rho > 0:
            raise ValueError(f"rho must be a float > 0, got {rho!r}")
        super().__init__(params, dict(rho=float(rho), adaptive=bool(adaptive), **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def _grad_norm(self) -> torch.Tensor:
        norms = [
            ((torch.abs(p) if group["adaptive"] else 1.0) * p.grad).norm(p=2)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not norms:
            raise RuntimeError("SAM.step: no parameter has a gradient; the closure must call backward()")
        return torch.stack([n.to(norms[0].device) for n in norms]).norm(p=2)

    @torch.no_grad()
    def first_step(self) -> None:
        """Move every parameter to w + e(w) and remember e(w)."""
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                e_w = (torch.pow(p, 2) if group["adaptive"] else 1.0) * p.grad * scale.to(p)
                p.add_(e_w)
                self.state[p]["e_w"] = e_w

    @torch.no_grad()
    def second_step(self) -> None:
        """Return to w and step the base optimizer with the gradient taken at w + e(w)."""
        for group in self.param_groups:
            for p in group["params"]:
                if "e_w" in self.state[p]:
                    p.sub_(self.state[p].pop("e_w"))
        self.base_optimizer.step()

    def _first_gradients(self) -> None:
        """Hook between the first gradient and the move to w + e(w) (GSAM keeps g)."""

    def _perturbed_gradients(self) -> None:
        """Hook after the gradient at w + e(w) (GSAM rewrites it)."""

    def step(self, closure=None):
        if closure is None:
            raise ValueError("closure must be given: SAM.step evaluates the loss twice")
        with torch.enable_grad():
            loss = closure()
        self._first_gradients()
        self.first_step()
        with torch.enable_grad():
            closure()
        self._perturbed_gradients()
        self.second_step()
        return loss


def gsam_direction(g: torch.Tensor, g_p: torch.Tensor, alpha: float, eps: float = 1e-12) -> torch.Tensor:
    """GSAM's update direction from the gradients at w (``g``) and at w + e(w) (``g_p``), flat ``[..., P]``
    (leading axes: independent models): ``g_p - alpha * (g - cos * ||g|| * g_p / (||g_p|| + eps))``,
    ``cos = <g, g_p> / (||g|| ||g_p|| + eps)`` (``gsam/gsam.py``'s ``gradient_decompose``)."""
    norm, norm_p = g.norm(dim=-1, keepdim=True), g_p.norm(dim=-1, keepdim=True)
    cos = (g * g_p).sum(-1, keepdim=True) / (norm * norm_p + eps)
    return g_p - alpha * (g - cos * norm * g_p / (norm_p + eps))


class GSAM(SAM):
    """SAM whose base step uses :func:`gsam_direction`, e.g. CondTSF's FTD experts:
    ``GSAM(model.parameters(), torch.optim.SGD, rho=2.0, alpha=0.4, adaptive=True, lr=5e-4, momentum=0.9)``
    (constant rho: CondTSF's ``ProportionScheduler`` with equal bounds and ``StepLR`` with gamma 1
    hold rho and lr fixed). ``step(closure)`` as :class:`SAM`."""

    def __init__(self, params, base_optimizer=torch.optim.SGD, *, rho: float = 2.0, alpha: float = 0.4,
                 adaptive: bool = True, **kwargs):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be a float in [0, 1], got {alpha!r}")
        super().__init__(params, base_optimizer, rho=rho, adaptive=adaptive, **kwargs)
        self.alpha = float(alpha)

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]

    @torch.no_grad()
    def _first_gradients(self) -> None:
        for p in self._params():
            self.state[p]["old_g"] = p.grad.clone()

    @torch.no_grad()
    def _perturbed_gradients(self) -> None:
        params = self._params()
        g = torch.cat([self.state[p].pop("old_g").reshape(-1) for p in params])
        g_p = torch.cat([p.grad.reshape(-1) for p in params])
        direction = gsam_direction(g, g_p, self.alpha)
        offset = 0
        for p in params:
            p.grad.copy_(direction[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
