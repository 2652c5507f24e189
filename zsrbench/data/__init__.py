"""Dataset builders. Importing this package registers the built-in datasets (nothing is read or downloaded)."""

from zsrbench.data import synthetic  # noqa: F401
from zsrbench.data.base import DatasetBuilder, DatasetInfo, EvalSet, select_indices  # noqa: F401

from zsrbench.data import tga16  # noqa: F401,E402
