"""Measuring resnet_kernels against cuDNN and torch.compile (used by ``benchmarks/``).

    layers.py       the conv layers of each model (shapes, FLOPs, bytes)
    roofline.py     the per-layer floor: max(FLOPs / peak, bytes / bandwidth)
    matrix.py       what the benchmark suite measures (models, batches, dtypes, providers)
    data.py         random inputs, rotated so that they do not fit in L2
    timing.py       device-time measurement (CUDA events, CUDA graphs, median of rounds)
    peaks.py        the two ceilings, measured on the device: GEMM FLOP/s and copy bandwidth
    accuracy.py     the tolerance rule against a float64 reference
    layer_providers.py, model_providers.py, tv_fused.py   what is timed
    environment.py  versions of torch, CUDA, cuDNN, Triton and the GPU
    results.py, report.py, charts.py   ``python -m resnet_kernels.bench report``

Nothing here imports torchvision, Triton or matplotlib at import time; the
report reads only the JSON that pytest-benchmark writes.
"""
