"""The static leaderboard website (``zsrbench site OUT``): see :mod:`zsrbench.site.build`.

:func:`build_site` is the Python API; the pages are plain HTML with a small script of their own
(``assets/site.js``: sorting and filtering), no framework, nothing loaded from the network.
"""

from zsrbench.site.build import DEFAULT_TITLE, SiteResult, build_site  # noqa: F401
from zsrbench.site.output import MARKER  # noqa: F401
