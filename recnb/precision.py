"""Mixed-precision training for the torch loops (NeuMF in ``baselines``, DQN in ``agents.dqn``; docs/training.md).

One option, ``precision``, in each training config:

* ``"fp32"`` (default) -- plain float32; autocast is off and the loop runs exactly as without this module;
* ``"bf16"`` -- the forward pass under ``torch.autocast(dtype=torch.bfloat16)``, on CPU or CUDA. bfloat16 has
  float32's exponent range, so gradients need no scaling;
* ``"fp16"`` -- float16 autocast with a ``torch.amp.GradScaler`` (the loss is scaled up before ``backward`` so
  small gradients do not underflow, and unscaled before clipping and the step). CUDA only: on a CPU it is
  refused with an error that names ``"bf16"``.

Weights, optimiser state, losses and returned scores stay float32 in every mode: autocast only lowers the
precision of the matrix products inside the forward pass.
"""

from __future__ import annotations

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(owner: str, precision) -> None:
    """Raise ``ValueError`` unless ``precision`` is one of :data:`PRECISIONS` (``owner`` names the config)."""
    if precision not in PRECISIONS:
        raise ValueError(f"{owner}.precision must be one of {PRECISIONS}, got {precision!r}")


class MixedPrecision:
    """Autocast and gradient scaling for one training loop at ``precision`` on ``device`` (notebooks 02 and 06)."""

    def __init__(self, precision: str, device, owner: str = "config"):
        check_precision(owner, precision)
        self.precision, self.device = precision, torch.device(device)
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError(
                f"{owner}(precision='fp16') needs a CUDA GPU: float16 autocast with gradient scaling is a GPU "
                f"technique, and this run is on {self.device.type}. Use precision='bf16' (or 'fp32') on a CPU"
            )
        self.enabled = precision != "fp32"
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None

    def autocast(self):
        """The forward pass's context: ``torch.autocast`` at this precision (disabled for fp32)."""
        dtype = _DTYPES.get(self.precision, torch.bfloat16)
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=self.enabled)

    def step(self, loss: torch.Tensor, optimizer, params=None, max_grad_norm: float | None = None) -> None:
        """``backward``, optional gradient clipping of ``params``, ``optimizer.step`` -- scaled when fp16.

        fp32 and bf16 run the plain sequence; fp16 scales the loss, unscales the gradients before clipping,
        and skips a step whose gradients overflowed (the scaler then lowers its scale).
        """
        if self.scaler is None:
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        if max_grad_norm is not None:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        self.scaler.step(optimizer)
        self.scaler.update()

    def __repr__(self) -> str:
        return f"MixedPrecision({self.precision!r}, device={str(self.device)!r})"
