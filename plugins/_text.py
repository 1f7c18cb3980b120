"""Making transcript text safe to show: one character-level rule shared by the display plugins.

A transcript is text from the network: it may hold anything a JSON string can,
lone surrogates included. Subtitle files and terminals need text that encodes
as UTF-8 and carries no control sequence. :func:`display_text` maps it, one
character at a time (so the length of the text never grows):

- every white-space character (``str.isspace``: tab, CR, LF, form feed,
  U+0085, U+2028, U+2029, no-break spaces...) becomes one space, so no
  character can end a line or a subtitle cue;
- every other control character (Unicode category Cc: C0, DEL and C1, so
  ESC and CSI and with them every terminal escape sequence) is removed;
- the bidirectional embedding, override and isolate controls (U+202A-U+202E,
  U+2066-U+2069) are removed: speech recognisers never produce them, they
  carry nothing that was said, and an unterminated one reorders everything
  after it on the line ("Trojan Source" spoofing, CVE-2021-42574). The
  implicit marks LRM, RLM and ALM, which right-to-left text uses and which
  cannot reorder anything, are kept;
- a lone surrogate (U+D800-U+DFFF; JSON's ``"\\ud800"`` decodes to one) becomes
  U+FFFD REPLACEMENT CHARACTER, which marks where the text was broken.

The event log does not use this: it keeps text exactly as received, escaped
(see :mod:`cartesia_sync_plugins.event_log`).

Regular expressions do the scanning, so a megabyte of text takes milliseconds.
"""

from __future__ import annotations

import re

__all__ = ["display_text", "BIDI_CONTROLS"]

#: The explicit bidirectional formatting characters that :func:`display_text` removes.
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

# ``\s`` in a str pattern matches exactly the characters ``str.isspace`` accepts.
_SPACE = re.compile(r"\s")
# After white space became spaces, what is left of category Cc (U+0000-U+001F, U+007F-U+009F).
_REMOVED = re.compile("[\x00-\x1f\x7f-\x9f" + BIDI_CONTROLS + "]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def display_text(text: str) -> str:
    """``text`` with white space as spaces, no control or bidi override characters, lone surrogates as U+FFFD."""
    text = _SPACE.sub(" ", text)
    text = _REMOVED.sub("", text)
    return _SURROGATE.sub("\ufffd", text)
