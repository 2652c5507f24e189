"""``zsrbench site OUT``: the static leaderboard website, built from the leaderboard's entries.

:func:`build_site` reads the leaderboard as ``zsrbench table`` does, gathers its tables and records
(:mod:`.data`), draws each measured entry's per-dataset figure (:func:`zsrbench.figures.plots.entry_bars`), renders the
pages (:mod:`.protocol_pages`, :mod:`.model_cards`, :mod:`.entry_pages`) and writes them with the static assets
into ``OUT`` all at once (:mod:`.output`). The site has no server side and loads nothing from the network: it
works from ``file://`` as well as from any static web host.

Layout::

    index.html                          protocols and threat models, the leading table, the model cards
    protocols/<protocol>-v<n>-eps<k>[-<subset>][-variant-<v>].html
                                        one leaderboard page per protocol version, ε (subset, experiment)
    models/<model>.html                 one model card per measured model
    entries/<protocol>__<entry>.html    one page per entry (measured, reported, audit)
    figures/<protocol>__<entry>.png     the measured entries' per-dataset figures
    assets/site.css, assets/site.js     style and the sorting/filtering script
    .zsrbench-site                      the marker that lets the next build replace the folder
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from zsrbench.errors import ZsrError
from zsrbench.leaderboard.reading import StoreView
from zsrbench.site import naming
from zsrbench.site.data import EntryKey, SiteData, collect
from zsrbench.site.entry_pages import Figure, all_entry_pages
from zsrbench.site.html import ASSETS
from zsrbench.site.model_cards import all_cards
from zsrbench.site.output import check_target, staged, write_files
from zsrbench.site.protocol_pages import index_html, protocol_html

DEFAULT_TITLE = "zsrbench leaderboard"


@dataclass
class SiteResult:
    out: Path
    pages: int
    figures: int
    warnings: list[str] = field(default_factory=list)

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def load_view(leaderboard_dir: str | Path | None, protocol: str | None) -> StoreView:
    """The entries ``zsrbench table`` shows for this leaderboard (and protocol)."""
    from zsrbench.leaderboard import board

    view = board.load_leaderboard(leaderboard_dir, protocol)
    if protocol is not None and not any(le.entry.protocol.name == protocol for le in view.entries):
        from zsrbench.registry import PROTOCOLS, load_builtins

        load_builtins()
        PROTOCOLS.get(protocol)  # a mistyped protocol is an error (with "did you mean"), not an empty site
    return view


def asset_files() -> dict[str, bytes]:
    folder = resources.files("zsrbench.site") / "assets"
    return {f"assets/{name}": (folder / name).read_bytes() for name in ASSETS}


def draw_figures(site: SiteData, stage: Path, log: Callable[[str], None] | None = None) -> dict[EntryKey, Figure]:
    """Each measured entry's per-dataset figure, drawn into ``stage``; a figure that cannot be drawn is left out
    and its page says why."""
    wanted = [(k, le) for k, le in site.entries.items() if le.entry.kind == "measured"]
    try:
        from zsrbench.figures.plots import entry_bars
    except ImportError as exc:
        note = f"the figures module of zsrbench is not available in this installation ({exc})"
        site.warnings.append(f"figures left out: {note}")
        return {k: Figure(None, note) for k, _ in wanted}
    if log and wanted:
        log(f"drawing {len(wanted)} figure(s)")
    out: dict[EntryKey, Figure] = {}
    for k, le in wanted:
        rel = naming.figure_file(*k)
        path = stage / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            row = site.suite_rows.get(k)
            written = Path(entry_bars(le, path, row.status if row is not None else None))
        except ZsrError as exc:  # the figure does not apply to this entry (said on its page)
            out[k] = Figure(None, str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - one figure never stops the site; the page and a warning say why
            out[k] = Figure(None, f"{type(exc).__name__}: {exc}")
            site.warnings.append(f"figure of {k[0]}/{k[1]} not drawn: {type(exc).__name__}: {exc}")
            continue
        try:
            out[k] = Figure(written.resolve().relative_to(stage.resolve()).as_posix())
        except ValueError:
            out[k] = Figure(None, f"the figure was written outside the site ({written})")
    return out


def render_pages(site: SiteData, figures: dict[EntryKey, Figure]) -> dict[str, bytes]:
    """Every page of the site and its assets, by path relative to the site's root."""
    pages = {"index.html": index_html(site)}
    pages.update({naming.protocol_page(k): protocol_html(pg, site) for k, pg in site.pages.items()})
    pages.update(all_cards(site))
    pages.update(all_entry_pages(site, figures))
    files = {path: text.encode("utf-8") for path, text in pages.items()}
    files.update(asset_files())
    return files


def build_site(out: str | Path, leaderboard_dir: str | Path | None = None, *, protocol: str | None = None,
               title: str = DEFAULT_TITLE, figures: bool = True,
               log: Callable[[str], None] | None = None) -> SiteResult:
    """Build the website of the leaderboard at ``leaderboard_dir`` (default: ``leaderboards``, or
    ``$ZSRBENCH_HOME/leaderboards``) into ``out``.

    ``out`` must be new, empty, or a folder an earlier build made (it is then replaced as a whole); anything
    else is a :class:`ZsrError` and nothing is written. ``figures=False`` leaves the figures out (faster).
    """
    from zsrbench import paths

    board = Path(leaderboard_dir) if leaderboard_dir is not None else paths.leaderboard_dir()
    target = check_target(out, board)
    view = load_view(leaderboard_dir, protocol)
    site = collect(view, title)
    with staged(target) as stage:
        figs = draw_figures(site, stage, log) if figures else {}
        files = render_pages(site, figs)
        write_files(stage, files)
    n_pages = sum(1 for p in files if p.endswith(".html"))
    return SiteResult(target, n_pages, sum(1 for f in figs.values() if f.path), site.warnings)
