"""Correctness before speed: the tolerance rule against a float64 reference.

A provider passes when ||out - ref|| / ||ref|| is at most twice what cuDNN
(torchvision's eager path) reaches on the same inputs in the same dtype, and
never below a floor for the dtype (so that an unusually exact cuDNN result
does not make the bar unreachable). NaN or Inf never passes. A failure raises:
a fast wrong answer fails its benchmark instead of being timed.
"""

from __future__ import annotations

import torch

#: the tests' tolerances (tests/helpers.py REL_TOL): a few times the rounding
#: of the output alone at that dtype
FLOOR = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


class WrongResult(AssertionError):
    """A provider's output is not the function it claims to compute."""


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out64, ref64 = out.double(), ref.double()
    return ((out64 - ref64).norm() / ref64.norm().clamp_min(1e-30)).item()


def tolerance(baseline_error: float, dtype: torch.dtype) -> float:
    return max(2.0 * baseline_error, FLOOR[dtype])


def check(what: str, out: torch.Tensor, ref: torch.Tensor, baseline_error: float, dtype: torch.dtype) -> tuple[float, float]:
    """(error, tolerance) when ``out`` passes; raises WrongResult otherwise."""
    if tuple(out.shape) != tuple(ref.shape):
        raise WrongResult(f"{what}: output shape {tuple(out.shape)}, expected {tuple(ref.shape)}")
    if not torch.isfinite(out).all().item():
        raise WrongResult(f"{what}: output has NaN or Inf")
    err, tol = rel_error(out, ref), tolerance(baseline_error, dtype)
    if err > tol:
        raise WrongResult(
            f"{what}: relative error {err:.2e} against the float64 reference exceeds {tol:.2e} "
            f"(2x cuDNN's {baseline_error:.2e}, floor {FLOOR[dtype]:.0e})"
        )
    return err, tol
