"""The one text normaliser shared by training and inference.

Training and serving must see identical strings, or the model silently degrades;
so every path into the tokenizer goes through `normalize_text`.
"""

from __future__ import annotations

import html
import re
import unicodedata

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_CONTROL = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b-\u200f\ufeff]")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Unescape HTML entities, drop URLs and control characters, collapse whitespace.

    URLs in feeds are shortened links (t.co/…) that carry no meaning but burn tokens.
    Cashtags and punctuation are kept: `$AAPL` and `…` carry signal.
    Entities are unescaped twice because feeds often double-escape (`&amp;amp;`).
    """
    text = html.unescape(html.unescape(text))
    text = unicodedata.normalize("NFKC", text)
    text = _URL.sub(" ", text)
    text = _CONTROL.sub("", text)
    return _SPACE.sub(" ", text).strip()
