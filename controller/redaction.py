"""Credentials out of text before it goes into a message: the one rule, for URLs and the git or HTTP
error text that quotes them. A leaf module (no imports from the controller), so every layer can use it.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"//[^/@]*@")


def redact(text: str) -> str:
    """`text` with the `user:password@` (or token) of every URL in it replaced by `***@`."""
    return _USERINFO.sub("//***@", text)
