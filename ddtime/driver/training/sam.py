"""Sharpness-aware minimisation (Foret et al., ICLR 2021), used for FTD's experts.

Each step: compute the gradient g at w, move to the worst-case neighbour
w + rho * g / ||g|| (``adaptive=True``: ASAM's element-wise scaling by |w|), recompute the
gradient there, return to w and let the base optimizer step with that second gradient.
"""
import torch


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

    def step(self, closure=None):
        if closure is None:
            raise ValueError("closure must be given: SAM.step evaluates the loss twice")
        with torch.enable_grad():
            loss = closure()
        self.first_step()
        with torch.enable_grad():
            closure()
        self.second_step()
        return loss
