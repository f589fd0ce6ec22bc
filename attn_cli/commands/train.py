"""`attn train` (SPEC §8): train the seeded model of the given options on the CPU and save a
folder that `--model DIR` reads. Like every command: parse, call the core (train.py), print,
and import torch only inside the command.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from attn_cli.commands.options import (DFF, DModel, Encoding, Errors, File, Heads, Layers, NoColor,
                                       _model, _output, _read, handle_errors, note)
from attn_cli.errors import ConfigError, InputError


def _train(*names, **kwargs):
    return typer.Option(*names, rich_help_panel="Training", **kwargs)


@handle_errors
def train(
    text: Annotated[Optional[str], typer.Argument(
        help="Train next-token prediction on this text ('-' reads standard input). Without a "
             "text or --file: the repeated-random-tokens task, where induction heads form.",
        show_default=False)] = None,
    file: File = None, errors: Errors = "strict",
    out: Annotated[Optional[Path], _output(
        "--out", help="The folder to write: config.json, model.safetensors, training.json "
                      "(and snapshots.safetensors); --model DIR reads it.",
        show_default=False)] = None,
    overwrite: Annotated[bool, _output(
        "--overwrite", help="Replace --out if it already holds files.")] = False,
    layers: Layers = None, heads: Heads = None, d_model: DModel = None, d_ff: DFF = None,
    seed: Annotated[Optional[int], _model(
        "--seed", help="The starting weights (the seeded model's) and every random draw of "
                       "training follow from it [default: 0].", show_default=False)] = None,
    encoding: Encoding = None,
    steps: Annotated[int, _train("--steps", help="Optimiser steps.")] = 400,
    batch: Annotated[int, _train("--batch", help="Sequences per step.")] = 64,
    lr: Annotated[float, _train("--lr", help="AdamW learning rate.")] = 3e-3,
    context: Annotated[Optional[int], _train(
        "--context", help="Tokens per sequence [default: 40 for the task; 64 for a text, or "
                          "the text's length if shorter].", show_default=False)] = None,
    every: Annotated[Optional[int], _train(
        "--every", help="A progress line every N steps [default: steps / 10].",
        show_default=False)] = None,
    snapshots: Annotated[Optional[int], _train(
        "--snapshots", help="Keep the probe's attention every N steps, for attn history.",
        show_default=False)] = None,
    json: Annotated[bool, _output(
        "--json", help="JSON lines on stdout: a header, then one line per progress report.")
    ] = False,
    no_color: NoColor = False,
) -> None:
    """Train a small model on the CPU in under a minute and save it as a folder that --model
    reads: watch a previous-token head and an induction head form."""
    from attn_cli import output
    from attn_cli import train as tr
    from attn_cli.documents.train import train_header

    if out is None:
        raise ConfigError("attn train needs --out DIR: the folder to save the trained model in")
    settings = tr.Settings(steps, batch, lr, context or 40, every or max(1, steps // 10),
                           snapshots)
    settings.check()
    tr.check_out(out, overwrite)
    source = _read(text, file, errors) if (text is not None or file is not None) else None
    from attn_cli.models.config import ModelConfig
    from attn_cli.tokenizers import VocabTokenizer, get_encoding, repeated_random

    options = ModelConfig(n_layers=2 if layers is None else layers,
                          n_heads=4 if heads is None else heads,
                          d_model=64 if d_model is None else d_model, d_ff=d_ff,
                          seed=0 if seed is None else seed)
    enc = get_encoding(encoding or "o200k_base")
    import torch

    g = torch.Generator().manual_seed(options.seed)
    if source is None:
        vocab = tr.task_vocabulary(enc)
        tokenizer = VocabTokenizer(enc, vocab)
        probe = repeated_random(tr.PROBE_REPEAT, 0, tokenizer)
        batches = tr.repeat_batches(g, settings.batch, settings.context, tokenizer.n_vocab)
        task = {"task": "induction", "periods": [4, settings.context // 2]}
    else:
        ids = enc.encode_ordinary(source)
        if len(ids) < tr.MIN_TEXT_TOKENS + 1:
            raise InputError(f"the text has {len(ids)} tokens; training on a text needs at "
                             f"least {tr.MIN_TEXT_TOKENS + 1}")
        vocab = tr.text_vocabulary(ids)
        tokenizer = VocabTokenizer(enc, vocab)
        rows = torch.tensor([tokenizer.rows[i] for i in ids])
        settings = replace(settings, context=min(context or 64, len(ids) - 1))
        settings.check()
        probe = tokenizer.encode(source)[:tr.PROBE_TEXT]
        batches = tr.text_batches(g, rows, settings.batch, settings.context)
        task = {"task": "text", "tokens": len(ids)}
    tr.check_memory(options, len(vocab) + 1, settings)
    model = tr.initial(options, vocab)
    about = {**task, "steps": settings.steps, "batch": settings.batch, "lr": settings.lr,
             "context": settings.context, "seed": options.seed}
    header = train_header(out, enc.name, tokenizer.n_vocab, model.cfg, about)
    run = tr.Training(model, batches, settings, probe)
    if json:
        write = sys.stdout.buffer
        with output.writing_stdout():
            write.write(output.dumps(header))
            write.flush()
            for report in run:
                write.write(output.dumps(report.to_dict()))
                write.flush()
    else:
        from attn_cli.views.train import columns, line, title

        console = output.make_console(no_color, record=False)
        with output.writing_stdout():
            console.print(title(model.cfg, tokenizer, task, settings))
            console.print(columns())
            for report in run:
                console.print(line(report))
    history = [r.to_dict() for r in run.reports]
    tr.save(out, model, tr.config_json(model, enc.name, vocab, about), history, probe,
            run.snapshots, overwrite)
    note(f"trained {settings.steps} steps in {run.seconds:.1f} s; saved {out}")
    if source is None:
        note(f"look at it: attn heads --model {out} --repeat {tr.PROBE_REPEAT} --pattern "
             f"induction" + (f"; attn history --model {out}" if snapshots else ""))
    else:
        start = tokenizer.decode(int(r) for r in rows[:4])
        note(f"look at it: attn generate --model {out} {shlex.quote(start)} -n 20" +
             (f"; attn history --model {out}" if snapshots else ""))
