"""`attn tokens`: token index, id, text and byte length; never imports torch or NumPy."""

from __future__ import annotations

from attn_cli.commands.options import (AllowSpecial, Encoding, Errors, File, Html, Json, NDJson,
                                       NoColor, Svg, Text, _check_formats, _read, handle_errors)


@handle_errors
def tokens(
    text: Text = None, file: File = None, errors: Errors = "strict",
    encoding: Encoding = None, allow_special: AllowSpecial = False,
    json: Json = False, ndjson: NDJson = False, no_color: NoColor = False,
    svg: Svg = None, html: Html = None,
) -> None:
    """Token index, id, text (whitespace and partial UTF-8 bytes made visible), byte length."""
    from attn_cli import output
    from attn_cli.documents.tokens import tokens_doc
    from attn_cli.views.tokens import tokens_table
    from attn_cli.tokenizers import get_encoding, tokenize

    _check_formats(json, ndjson, svg, html)
    source = _read(text, file, errors)
    name = "o200k_base" if encoding is None else encoding
    toks = tokenize(source, get_encoding(name), allow_special)
    if json:
        output.write_json(tokens_doc(source, name, toks))
    elif ndjson:
        doc = tokens_doc(source, name, toks)
        output.write_ndjson({k: v for k, v in doc.items() if k != "tokens"}, doc["tokens"])
    else:
        console = output.make_console(no_color, record=bool(svg or html))
        output.show(console, tokens_table(toks), svg, html, "attn tokens")
