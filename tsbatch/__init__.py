"""tsbatch: classify large amounts of text with a model served by TorchServe."""

from tsbatch._errors import LocalServerError, TorchServeError

__version__ = "0.1.0.dev0"

__all__ = [
    "LocalServerError",
    "TorchServeError",
    "__version__",
]
