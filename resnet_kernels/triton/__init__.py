"""Triton backend of the fused op: NHWC implicit-GEMM kernels with the BN/residual/ReLU
epilogue and the pre-activation prologue fused (see conv_kernel.py for the design)."""

from .conv import conv_bn_act

__all__ = ["conv_bn_act"]
