"""MkDocs hook: render the Sphinx roles of the package's docstrings as code.

The docstrings use reST roles (``:class:`Plan```, ``:func:`~pkg.mod.f```), which
Markdown shows literally. This strips the role and, as Sphinx does for ``~``, keeps
only the last component of the name.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):<code>(~?)([\w.]+)</code>")


def _code(match: re.Match[str]) -> str:
    name = match.group(2)
    return f"<code>{name.rpartition('.')[2] if match.group(1) else name}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(_code, html)
