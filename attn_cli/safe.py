"""Text made safe for a terminal (SPEC §4: nothing raw reaches the terminal).

Everything `attn` prints to a terminal that it did not write itself (token text, paths, option
values, a model folder's name) passes through `terminal()`, which shows as visible escapes the
characters that would move the cursor, recolour the screen, reverse the rest of a line or split
it: C0 controls and DEL as `<1B>` (tokenizers.visible's convention for token bytes), and C1
controls, Unicode format characters (bidi overrides such as U+202E, zero-width spaces, the BOM)
and the line and paragraph separators U+2028/U+2029 as `<U+202E>`. A lone surrogate that stands
for an undecodable byte (a path that is not UTF-8) is shown as that byte, `<FF>`. The escapes
are printable ASCII, so escaping twice changes nothing. JSON keeps the exact text: only what
goes to a terminal passes here.

An ASCII-only terminal (`PYTHONIOENCODING=ascii`, `LANG=C` on an old system) gets ASCII
stand-ins for attn's own symbols (`·` → `.`, `×` → `x`, `░▒▓█` → `:+*#`, `−∞` → `-inf`) and
`<U+00E9>` for any other character it cannot show. Stand-ins for symbols that sit in aligned
columns are one character wide, so tables stay aligned. Light: stdlib only.
"""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

# Set by the CLI when standard output cannot show more than ASCII: the views then lay out
# token labels and numbers in ASCII (so column widths are right) before they are printed.
ASCII = False

# attn's own symbols -> ASCII. One character where the symbol can sit in an aligned column.
_STAND_INS = {
    "·": ".", "×": "x", "→": ">", "←": "<", "−": "-", "—": "-", "–": "-", "…": "~",
    "‖": "|", "─": "-", "━": "-", "│": "|", "░": ":", "▒": "+", "▓": "*", "█": "#",
    "␣": "_", "\u00a0": " ", "▼": "v",
    # only in running text: wider stand-ins are fine
    "↵": "\\n", "⇥": "\\t", "␍": "\\r", "∞": "inf", "√": "sqrt", "ᵀ": "^T", "Σ": "sum",
    "½": "1/2", "≥": ">=", "≤": "<=", "÷": "/", "₁": "1", "₂": "2", "Â": "A^", "§": "S",
    "²": "^2", "≈": "~", "‘": "'", "’": "'", "“": '"', "”": '"', "✓": "ok", "✗": "x",
}
_TABLE = str.maketrans(_STAND_INS)
_ROOT = re.compile(r"√(\w+)")


def terminal(text: str) -> str:
    """`text` with control, format and separator characters escaped (and in ASCII mode, every
    other character ASCII cannot show)."""
    if not text.isprintable():
        text = "".join(map(_char, text))
    return to_ascii(text) if ASCII else text


def _char(ch: str) -> str:
    code = ord(ch)
    if code < 0x20 or code == 0x7F:
        return f"<{code:02X}>"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"<{code - 0xDC00:02X}>"
    if unicodedata.category(ch) in _UNSAFE:
        return f"<U+{code:04X}>"
    return ch


def to_ascii(text: str) -> str:
    """Stand-ins for attn's symbols, `<U+XXXX>` for any other non-ASCII character."""
    if text.isascii():
        return text
    if "√" in text:
        text = _ROOT.sub(r"sqrt(\1)", text)
    text = text.translate(_TABLE)
    if text.isascii():
        return text
    return "".join(ch if ch.isascii() else f"<U+{ord(ch):04X}>" for ch in text)


def fmt_inf(negative: bool) -> str:
    return ("-inf" if negative else "inf") if ASCII else ("−∞" if negative else "∞")


def can_show(stream, sample: str = "·×→─░▒▓█␣…‖√ᵀ") -> bool:
    """Whether `stream`'s encoding can carry attn's symbols."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        sample.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


class AsciiStream:
    """A text stream that writes only ASCII: stand-ins and escapes for the rest. It takes any
    text, so it says "utf-8" (rich then keeps its usual table rules, which become ASCII here);
    everything else (buffer, fileno, isatty) is the wrapped stream's."""

    encoding = "utf-8"

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(to_ascii(text))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
