"""`python -m resnet_kernels`: resnet50 against torchvision, then (on a GPU) the speed.

1. Correctness: torchvision's resnet50 with random weights and randomized
   BatchNorm statistics, the same state_dict loaded into resnet_kernels.resnet50,
   eval mode. On the CPU the reference backend in float32; on a GPU every
   available backend in fp16 channels_last, each judged by the tolerance rule
   (its error against a float64 run at most 2x torchvision's own fp16 error).
2. Speed (GPU only): images/s at one batch size, ours per backend against
   torchvision eager (cuDNN). The full comparison is `pytest benchmarks/`.

Exits non-zero when a correctness check fails.
"""

from __future__ import annotations

import argparse
import sys

import torch

from . import backends


def _rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def _models(seed: int):
    import torchvision

    from .bench.data import randomize_batchnorm
    from .models import resnet50

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tv = torchvision.models.resnet50().eval()
    randomize_batchnorm(tv, generator)
    ours = resnet50().eval()
    ours.load_state_dict(tv.state_dict())
    return tv, ours, generator


def check_cpu(batch: int, size: int, seed: int) -> bool:
    tv, ours, generator = _models(seed)
    x = torch.randn(batch, 3, size, size, generator=generator)
    with torch.no_grad():
        ref = tv.double()(x.double())
        out = ours(x, backend="reference")
    err = _rel_error(out, ref)
    ok = err < 1e-4
    print(f"resnet50 {batch}x3x{size}x{size} fp32 cpu, backend=reference: "
          f"rel. error vs float64 torchvision {err:.2e}  {'OK' if ok else 'FAIL'}")
    print("No GPU here: the speed comparison needs one (see `pytest benchmarks/ --benchmark-only`).")
    return ok


def check_gpu(batch: int, size: int, seed: int, speed_batch: int) -> bool:
    from .autoselect import time_cuda

    tv, ours, generator = _models(seed)
    x = torch.randn(batch, 3, size, size, generator=generator).cuda()
    with torch.no_grad():
        ref = tv.double().cuda()(x.double())
        tv_half = tv.half().to(memory_format=torch.channels_last)
        xh = x.half().contiguous(memory_format=torch.channels_last)
        tv_err = _rel_error(tv_half(xh), ref)
    ours = ours.cuda().half().to(memory_format=torch.channels_last)
    names = [b for b in ("cuda", "triton") if backends.unavailable_reason(b, xh) is None]
    print(f"resnet50 {batch}x3x{size}x{size} fp16 channels_last on {torch.cuda.get_device_name()}")
    print(f"  torchvision (cuDNN) fp16 rel. error vs float64: {tv_err:.2e}")
    ok = True
    for name in names:
        with torch.no_grad():
            out = ours(xh, backend=name)
        err = _rel_error(out, ref)
        agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
        passed = err <= max(2 * tv_err, 1e-3) and not out.isnan().any().item()
        ok &= passed
        print(f"  backend={name:8s} rel. error {err:.2e}, top-1 agreement {agree:.0%}  {'OK' if passed else 'FAIL'}")
    for name, reason in ((b, backends.unavailable_reason(b, xh)) for b in ("cuda", "triton")):
        if reason:
            print(f"  backend={name:8s} skipped: {reason}")

    torch.backends.cudnn.benchmark = True
    xs = torch.randn(speed_batch, 3, 224, 224, device="cuda", dtype=torch.half).contiguous(
        memory_format=torch.channels_last)
    print(f"speed, batch {speed_batch} fp16 channels_last (median of 10):")
    with torch.no_grad():
        ms = time_cuda(lambda: tv_half(xs))
        print(f"  torchvision eager (cuDNN): {speed_batch / ms * 1e3:9.0f} img/s")
        for name in names:
            ms = time_cuda(lambda: ours(xs, backend=name))
            print(f"  resnet_kernels {name:8s}:  {speed_batch / ms * 1e3:9.0f} img/s")
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet_kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2, help="batch of the correctness check")
    parser.add_argument("--size", type=int, default=224, help="image size of the correctness check")
    parser.add_argument("--speed-batch", type=int, default=256, help="batch of the speed comparison (GPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if torch.cuda.is_available():
        ok = check_gpu(args.batch, args.size, args.seed, args.speed_batch)
    else:
        ok = check_cpu(args.batch, args.size, args.seed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
