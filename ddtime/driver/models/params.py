"""Models as functions of one flat parameter vector (trajectory matching, expert storage).

The flat layout is ``named_parameters()`` order, each tensor flattened row-major. Buffers are
not part of it (the backbones in this package hold none).
"""
import torch
from torch import nn
from torch.func import functional_call


def param_spec(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """[(name, shape), ...] in ``named_parameters()`` order: the layout of ``flat_params``."""
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


def num_params(model: nn.Module) -> int:
    """P, the length of the flat parameter vector."""
    return sum(p.numel() for p in model.parameters())


def flat_params(model: nn.Module) -> torch.Tensor:
    """Detached copy of all parameters as one vector [P] (dtype and device of the parameters)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


def _check_flat(model: nn.Module, flat) -> None:
    if not isinstance(flat, torch.Tensor):
        raise TypeError(f"flat must be a torch.Tensor, got {type(flat).__name__}")
    expected = num_params(model)
    if flat.dim() != 1 or flat.numel() != expected:
        raise ValueError(
            f"flat must be a vector of {expected} parameters for {type(model).__name__}, got shape {tuple(flat.shape)}"
        )


def unflatten_params(model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """{name: view of ``flat`` with the parameter's shape}; the views keep ``flat``'s autograd graph."""
    _check_flat(model, flat)
    params, offset = {}, 0
    for name, shape in param_spec(model):
        size = 1
        for s in shape:
            size *= s
        params[name] = flat[offset : offset + size].view(shape)
        offset += size
    return params


def assign_flat_params(model: nn.Module, flat: torch.Tensor) -> nn.Module:
    """Copy ``flat`` [P] into the model's parameters in place (no autograd); returns the model."""
    _check_flat(model, flat)
    params = unflatten_params(model, flat.detach())
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name])
    return model


class _BoundMethod(nn.Module):
    """Calls ``getattr(model, method)`` so ``functional_call`` can run methods other than forward."""

    def __init__(self, model: nn.Module, method: str):
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, *args):
        return getattr(self.model, self.method)(*args)


def functional_forward(model: nn.Module, flat: torch.Tensor, x: torch.Tensor, *, method: str = "forward"):
    """``model.<method>(x)`` evaluated with the parameters in ``flat`` [P] instead of the model's own.

    Differentiable with respect to ``flat`` and ``x`` (also with ``create_graph=True``): the
    model itself is not modified. ``method="embed"`` gives the features under ``flat``.
    """
    params = unflatten_params(model, flat)
    if method == "forward":
        return functional_call(model, params, (x,))
    if not callable(getattr(model, method, None)):
        raise ValueError(
            f"method must name a method of {type(model).__name__} such as 'forward' or 'embed', got {method!r}"
        )
    bound = _BoundMethod(model, method)
    return functional_call(bound, {f"model.{name}": value for name, value in params.items()}, (x,))
