"""Text from a peer made safe to print on a terminal: the one place that decides what may reach one.

A transcript, an error body, a request id or a plugin's name comes from
someone else. Printed as it is, an escape sequence in it can recolour or clear
the screen, move the cursor over earlier lines, set the window title, write to
the clipboard (OSC 52) or make a link that shows one address and opens another
(OSC 8); a bidi override can make text read differently from what it holds.
:func:`terminal_safe` keeps the words and drops all of that.

Written here rather than taken from a library: what is needed is a few lines
of ECMA-48 (the sequences' shapes) plus Unicode categories, and the libraries
that strip ANSI codes either keep the C1 controls and bidi overrides or
pull in a terminal toolkit.
"""

from __future__ import annotations

import re

__all__ = ["terminal_safe"]

#: Escape sequences as whole units, so their parameters do not show up as text: control strings
#: (OSC, DCS, SOS, PM, APC, in 7-bit or 8-bit form) up to their terminator (BEL or ST), CSI
#: sequences, then any other ESC sequence (``ESC c``, ``ESC 7``, ``ESC ( B``). A control string's
#: body stops at the next ESC or C1 control, so an unterminated one costs linear time: its
#: introducer goes as an ordinary escape, its body stays as (harmless) text.
_SEQUENCE = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x80-\x9f]*(?:\x07|\x1b\\|\x9c)"
    r"|(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)

#: Bidirectional embeddings, overrides and isolates (U+202A-202E, U+2066-2069): they reorder what
#: follows them on the screen.
_BIDI = {*range(0x202A, 0x202F), *range(0x2066, 0x206A)}

#: Characters that break a line: kept as a line break in multi-line text, a space otherwise.
_LINE_BREAKS = {0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029}


def _table(multiline: bool) -> dict[int, str | None]:
    """``str.translate`` table: C0/DEL/C1 controls, bidi controls and lone surrogates."""
    table: dict[int, str | None] = {}
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0)):
        table[code] = None  # NUL, BEL, BS, ESC left over, DEL, C1 controls...
    table[0x09] = " "
    table[0x1F] = " "
    for code in _LINE_BREAKS:
        table[code] = "\n" if multiline else " "
    for code in _BIDI:
        table[code] = None
    for code in range(0xD800, 0xE000):
        table[code] = "\ufffd"  # a lone surrogate cannot be encoded in any codec: show that one was there
    return table


_MULTILINE, _ONE_LINE = _table(True), _table(False)


def terminal_safe(text: str, *, multiline: bool = True) -> str:
    """``text`` without anything a terminal would act on instead of showing it.

    Drops escape sequences whole (CSI such as ``ESC [ 2 J``, OSC such as a window
    title, hyperlink or clipboard write, DCS/APC/PM/SOS strings, other ``ESC``
    sequences), every other C0 and C1 control character and DEL, and the bidi
    embedding, override and isolate characters (U+202A-202E, U+2066-2069). A
    tab becomes a space. Line breaks (``\\n``, ``\\r\\n``, a lone ``\\r``, U+2028...)
    become ``\\n`` when ``multiline`` is true and a space otherwise. A lone
    surrogate (not text in any encoding) becomes U+FFFD. Everything else,
    letters of every script included, is kept as it is.

    Use it on any text from a server, a file or a plugin before writing it to
    a terminal; keep the original for files and JSON.

    :param text: the text to print.
    :param multiline: keep line breaks (``False``: the result is one line).
    :returns: the text to print; ``text`` itself when there was nothing to remove.
    """
    if text.isprintable():  # the common case: no control, separator or surrogate at all
        return text
    text = _SEQUENCE.sub("", text.replace("\r\n", "\n"))
    return text.translate(_MULTILINE if multiline else _ONE_LINE)
