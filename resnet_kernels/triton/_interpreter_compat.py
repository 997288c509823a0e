"""A fix for the Triton interpreter (TRITON_INTERPRET=1) of older Triton releases.

Triton 3.6's interpreter (checked; 3.8 is fixed) turns a scalar kernel argument into a numpy array of
shape (1,) and gives tensors ``__index__ = int(self.handle.data)``. NumPy >= 2.4
refuses ``int()`` of an array with ndim > 0 ("only 0-dimensional arrays can be
converted to Python scalars"), so any ``range(...)`` over a runtime value in a
kernel fails there. Triton 3.8 squeezes the array first; this installs the same
behaviour (``.item()`` of a one-element array) on the interpreter in use. Only
interpreted launches are affected; compiled kernels never see it.
"""

from __future__ import annotations

_installed = False


def install() -> None:
    """Idempotently patch the interpreter's tensor ``__index__`` (no-op if Triton's layout differs)."""
    global _installed
    if _installed:
        return
    _installed = True
    try:
        from triton.runtime import interpreter
    except Exception:  # pragma: no cover - interpreter module moved/renamed: nothing to fix
        return
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None:  # pragma: no cover
        return

    def _index(self):
        return int(self.handle.data.item())

    def _patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", _index)

    interpreter._patch_lang_tensor = _patch_lang_tensor
