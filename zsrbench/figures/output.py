"""Where a figure goes and in which format: ``--out`` paths and ``--format``, checked before anything is drawn,
and the all-or-nothing write of the rendered files."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from zsrbench.errors import ZsrError

FORMATS = ("png", "svg")
DPI = 200  # PNG resolution: sharp enough for a paper column


@dataclass(frozen=True)
class Output:
    path: Path
    format: str  # one of FORMATS


def parse_formats(text: str | None) -> tuple[str, ...] | None:
    """``--format png,svg`` → ``("png", "svg")``; None when not given."""
    if text is None:
        return None
    formats = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()))
    bad = [f for f in formats if f not in FORMATS]
    if not formats or bad:
        raise ZsrError(f"--format takes {' or '.join(FORMATS)} (or both, comma-separated: png,svg); got {text!r}.")
    return formats


def resolve_outputs(outs: Sequence[str | Path], formats: Sequence[str] | None = None, *,
                    option: str = "--out") -> list[Output]:
    """The files to write: each ``--out`` path with its format taken from its suffix (``.png``, ``.svg``), or,
    when ``formats`` is given, one file per format (a path without suffix gets it added). Each folder must be
    writable; nothing is created here."""
    from zsrbench.leaderboard.atomic import probe
    from zsrbench.paths import check_output_dir

    if not outs:
        raise ZsrError(f"No output file given: pass {option} FILE.png or {option} FILE.svg.")
    result: list[Output] = []
    for out in outs:
        p = Path(out).expanduser()
        suffix = p.suffix.lower().lstrip(".")
        if formats is None:
            if suffix not in FORMATS:
                raise ZsrError(f"{option} {out}: zsrbench writes figures as PNG or SVG, and the suffix "
                               f"'{p.suffix or '(none)'}' names neither. End the name in .png or .svg, or give the "
                               "format with --format png|svg.")
            result.append(Output(p, suffix))
            continue
        if suffix and suffix not in formats:
            raise ZsrError(f"{option} {out} ends in '{p.suffix}' but --format asks for {','.join(formats)}; make "
                           "them agree, or drop the suffix (it is added per format).")
        result += [Output(p if suffix == f else p.with_name(p.name + "." + f), f) for f in formats]
    unique = list({o.path.absolute(): o for o in result}.values())
    for o in unique:  # (names and whole paths the filesystem cannot hold are refused before anything is looked up)
        check_output_dir(o.path.parent, option, "Output folder")
        if probe(o.path, option=option):
            raise ZsrError(f"{option} {o.path} is a folder; name a file in it (e.g. {o.path / ('figure.' + o.format)}).")
    return unique


def new_figure(width: float, height: float):
    """A matplotlib figure on the Agg canvas (no pyplot state, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=None)
    FigureCanvasAgg(fig)
    return fig


def render(fig, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes (SVG without a date, so equal figures give equal files)."""
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else None
    fig.savefig(buf, format=fmt, dpi=DPI, metadata=metadata, bbox_inches="tight", pad_inches=0.08,
                facecolor="white")
    return buf.getvalue()


def write_files(items: Sequence[tuple[Path, bytes]], *, option: str = "--out") -> list[Path]:
    """Write every file or none (:func:`zsrbench.leaderboard.atomic.replace_files`); an OSError becomes a
    :class:`ZsrError` naming the cause."""
    from zsrbench.leaderboard.atomic import replace_files, user_error

    if not items:
        return []
    try:
        replace_files([(Path(p), blob) for p, blob in items])
    except OSError as exc:
        raise user_error(items[0][0], exc, kept="None of the files of this command was written; files already "
                         "there are unchanged", option=option) from exc
    return [Path(p) for p, _ in items]


def figure_files(fig, outputs: Sequence[Output]) -> list[tuple[Path, bytes]]:
    return [(o.path, render(fig, o.format)) for o in outputs]
