"""`attn encodings`: the encodings attn knows and whether each works offline."""

from __future__ import annotations

from attn_cli.commands.options import (Json, NoColor, handle_errors)


@handle_errors
def encodings(json: Json = False, no_color: NoColor = False) -> None:
    """The encodings attn knows and whether each works offline (bundled / cached / needs network)."""
    from attn_cli import output
    from attn_cli.documents.tokens import encodings_doc
    from attn_cli.tokenizers.encodings import availability, known_encodings
    from attn_cli.views.tokens import encodings_table

    rows = [(name, availability(name)) for name in known_encodings()]
    if json:
        output.write_json(encodings_doc(rows))
    else:
        console = output.make_console(no_color, record=False)
        output.show(console, encodings_table(rows), None, None, "attn encodings")
