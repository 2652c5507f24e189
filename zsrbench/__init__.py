"""zsrbench: zero-shot adversarial robustness benchmark for CLIP-like models."""

__version__ = "0.1.0"

from zsrbench.errors import ZsrError  # noqa: E402

__all__ = ["ZsrError", "__version__"]
