"""`attn tokens`: token index, id, text and byte length; never imports torch or NumPy."""

from __future__ import annotations

from attn_cli.commands.options import (AllowSpecial, Encoding, Errors, File, Html, Json,
                                       ModelPath, NDJson, NoColor, Svg, Text, _check_formats,
                                       _read, handle_errors)
from attn_cli.errors import ConfigError


@handle_errors
def tokens(
    text: Text = None, file: File = None, errors: Errors = "strict",
    encoding: Encoding = None, model: ModelPath = None, allow_special: AllowSpecial = False,
    json: Json = False, ndjson: NDJson = False, no_color: NoColor = False,
    svg: Svg = None, html: Html = None,
) -> None:
    """Token index, id, text (whitespace and partial UTF-8 bytes made visible), byte length;
    with --model, the checkpoint's own tokenizer, its special tokens included."""
    from attn_cli import output
    from attn_cli.documents.tokens import tokens_doc
    from attn_cli.tokenizers import get_encoding, tokenize
    from attn_cli.views.tokens import tokens_table

    _check_formats(json, ndjson, svg, html)
    if model is not None and encoding is not None:
        raise ConfigError("--encoding cannot be combined with --model: the checkpoint brings its "
                          "own tokenizer; drop --encoding")
    if model is not None:
        from attn_cli.models import folders  # no torch: the tokenizer files only

        tokenizer = folders.load_tokenizer(folders.resolve(model))
        name = tokenizer.name
    else:
        name = "o200k_base" if encoding is None else encoding
        tokenizer = get_encoding(name)
    source = _read(text, file, errors)
    toks = tokenize(source, tokenizer, allow_special)
    if json:
        output.write_json(tokens_doc(source, name, toks))
    elif ndjson:
        doc = tokens_doc(source, name, toks)
        output.write_ndjson({k: v for k, v in doc.items() if k != "tokens"}, doc["tokens"])
    else:
        console = output.make_console(no_color, record=bool(svg or html))
        output.show(console, tokens_table(toks), svg, html, "attn tokens")
