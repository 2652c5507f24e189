"""``zsrbench data check``: which datasets of a data root are usable, without decoding their images.

Each dataset is built as an evaluation would build it: its metadata is read (file lists, labels, class names)
and the first and last image are opened, nothing more. A dataset whose folder is absent is "missing", one whose
folder is there but incomplete or unreadable is "wrong layout".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zsrbench.data.layout import DataLayoutError, DataMissingError
from zsrbench.errors import ZsrError
from zsrbench.registry import DATASETS

FOUND, MISSING, WRONG_LAYOUT, ERROR = "found", "missing", "wrong layout", "error"


@dataclass(frozen=True)
class DatasetStatus:
    """The state of one dataset under a data root."""

    name: str
    title: str
    status: str  # FOUND, MISSING, WRONG_LAYOUT or ERROR
    n_images: int | None
    n_classes: int | None
    path: str | None  # the dataset's folder (where it was found, or where it was expected)
    message: str

    @property
    def ok(self) -> bool:
        return self.status == FOUND


def default_datasets() -> list[str]:
    from zsrbench.data.tga16 import TGA16_KEYS

    return list(TGA16_KEYS)


def check_data_root(root: str | Path, datasets: list[str] | None = None) -> list[DatasetStatus]:
    """The status of each of ``datasets`` (the 16 of tga16 by default) under ``root``.

    Unknown dataset names raise :class:`ZsrError` (with the registry's "did you mean").
    """
    import zsrbench.data  # noqa: F401  (registers the built-in datasets)

    names = list(datasets) if datasets else default_datasets()
    builders = {name: DATASETS.get(name) for name in names}  # fails early on an unknown name
    return [_status(name, builder, Path(root).expanduser()) for name, builder in builders.items()]


def _expected_path(name: str, root: Path) -> str | None:
    from zsrbench.data.tga16 import SOURCES

    source = SOURCES.get(name)
    return str(root / source.folder) if source else None


def _status(name: str, builder, root: Path) -> DatasetStatus:
    title = builder.info.title
    path = _expected_path(name, root)
    try:
        evalset = builder.build(root, image_size=builder.info.native_size or 224)
    except DataMissingError as exc:
        return DatasetStatus(name, title, MISSING, None, None, path, str(exc))
    except DataLayoutError as exc:
        return DatasetStatus(name, title, WRONG_LAYOUT, None, None, path, str(exc))
    except ZsrError as exc:
        return DatasetStatus(name, title, ERROR, None, None, path, str(exc))
    except Exception as exc:  # a reader bug or an unexpected file: report it, keep checking the others
        return DatasetStatus(name, title, ERROR, None, None, path, f"{type(exc).__name__}: {exc}")
    n = len(evalset)
    folder = evalset.extra.get("folder", path)
    message = f"{evalset.info.split} split, read by {evalset.extra.get('reader', 'zsrbench')}"
    return DatasetStatus(name, title, FOUND, n, evalset.info.num_classes, folder, message)
