"""Showing untrusted text (run names, tags, data roots) in Markdown-rendered elements."""
from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def escape(text: object) -> str:
    """`text` with every Markdown and HTML special character backslash-escaped, so it shows literally."""
    return _SPECIAL.sub(r"\\\1", str(text))
