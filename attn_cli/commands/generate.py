"""`attn generate`: continue the prompt token by token, with what each new token read."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from attn_cli.commands.options import (AllowSpecial, Causal, Device, DFF, DModel, Dtype, Encoding,
                                       Errors, File, Heads, Json, LayerList, Layers, ModelOptions,
                                       ModelPath, NDJson, NoColor, Text, Truncate, _check_formats,
                                       _read, _stream_ndjson, _then, _tokens, build, handle_errors,
                                       note)
from attn_cli.errors import ConfigError


@handle_errors
def generate(
    prompt: Text = None, file: File = None, errors: Errors = "strict",
    encoding: Encoding = None, allow_special: AllowSpecial = False,
    layers: Layers = None, heads: Heads = None, d_model: DModel = None, d_ff: DFF = None,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", help="Seeds the sampler, and the weights of the seeded model [default: 0].",
        show_default=False)] = None,
    causal: Causal = None, model: ModelPath = None,
    truncate: Truncate = False, device: Device = "cpu", dtype: Dtype = None,
    new: Annotated[int, typer.Option("-n", "--new-tokens", help="Tokens to generate.")] = 10,
    temperature: Annotated[Optional[float], typer.Option(
        "--temperature", help="Sample from softmax(logits / T) instead of greedy (0: greedy).",
        show_default=False)] = None,
    sample_top_k: Annotated[Optional[int], typer.Option(
        "--top-k", help="Sample among the K most likely tokens only (temperature 1 unless "
                        "given).", show_default=False)] = None,
    sample_seed: Annotated[Optional[int], typer.Option(
        "--sample-seed", help="Seed of the sampler alone [default: --seed].",
        show_default=False)] = None,
    candidates: Annotated[int, typer.Option(
        "--candidates", help="Most likely tokens listed per step (the chosen one and its "
                             "runners-up).")] = 5,
    layer: LayerList = None,
    head: Annotated[Optional[list[int]], typer.Option(
        "--head", help="Heads whose attention to show (repeatable) [default: the mean over "
                       "every head of each layer].", show_default=False)] = None,
    precision: Annotated[int, typer.Option("--precision", help="Decimals in tables.", min=0,
                                           max=8)] = 3,
    json: Json = False, ndjson: NDJson = False, no_color: NoColor = False,
) -> None:
    """Continue the prompt token by token (greedy, or sampled), printing each token as it is
    made, then its probability, the runners-up and what it attended to."""
    from attn_cli import generate as gen

    _check_formats(json, ndjson, None, None)
    if new < 1:
        raise ConfigError(f"-n must be at least 1, got {new}")
    if candidates < 1:
        raise ConfigError(f"--candidates must be at least 1, got {candidates}")
    from attn_cli.models.config import MAX_SEED

    for flag, value in (("--seed", seed), ("--sample-seed", sample_seed)):
        if value is not None and not 0 <= value <= MAX_SEED:
            raise ConfigError(f"{flag} must be between 0 and {MAX_SEED}, got {value}")
    sampling = gen.Sampling(temperature, sample_top_k,
                            sample_seed if sample_seed is not None else seed or 0)
    sampling.check()
    # with --model, --seed seeds only the sampler: the checkpoint fixes its own weights
    opts = ModelOptions(layers, heads, d_model, d_ff, seed if model is None else None, causal,
                        encoding, model, device, truncate, dtype)
    net, enc, name = build(opts, streamed=False)
    lm_head = gen.LMHead(net, enc)
    watch = gen.watch_list(net.cfg, layer, head)
    source = _read(prompt, file, errors)
    limit = net.cfg.n_positions
    tokens = _tokens(source, enc, allow_special, None if limit is None else limit - 1, truncate)
    gen.check_budget(net.cfg, len(tokens), new, len(watch))
    run = gen.Generation(net, lm_head, [t.id for t in tokens], new, sampling=sampling,
                         shown=candidates, watch=watch, stops=gen.stop_ids(net, enc))
    from attn_cli.documents.generate import (generate_doc, generate_header, generate_tail,
                                             step_record)
    from attn_cli.views.generate import LiveText, generate_title, summary
    from attn_cli import output

    if json:
        steps = list(run)
        output.write_json(generate_doc(source, name, net.cfg, tokens, sampling, steps,
                                          run.stop))
    elif ndjson:
        _stream_ndjson(generate_header(source, name, net.cfg, tokens, sampling),
                       _then((step_record(s) for s in run),
                             lambda: generate_tail(source, run.steps, run.stop)))
    else:
        from attn_cli.views.matrix import View

        console = output.make_console(no_color, record=False)
        view = View(precision=precision, color=output.uses_color(console), width=console.width)
        console.print(generate_title(net.cfg, name, len(tokens), sampling))
        live = LiveText(console, console.is_terminal, precision)
        live.start(tokens)
        try:
            for step in run:
                live.add(step)
        finally:  # Ctrl-C or an error mid-line: end the line before anything else is said
            live.end()
        console.print()
        console.print(summary(tokens, run.steps, run.stop, sampling, view))
    if run.stop == "end_of_text":
        note(f"stopped at the end-of-text token after {len(run.steps)} of {new} tokens")
    elif run.stop == "positions":
        note(f"stopped after {len(run.steps)} of {new} tokens: this model reads at most "
             f"{limit} positions")
