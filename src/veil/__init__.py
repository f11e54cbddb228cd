"""veil: private, reproducible AI on your own data.

Importing this package is cheap on purpose: heavy dependencies (torch, ...) are imported only by the
modules that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]  # the packages: veil.data, veil.privacy, veil.solutions, ...
