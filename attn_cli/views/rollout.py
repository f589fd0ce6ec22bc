"""`attn rollout` on the terminal: the rolled-out matrix and each token's top input tokens."""

from __future__ import annotations

import numpy as np
from rich.console import Group
from rich.text import Text

from attn_cli.capture import Capture, HeadCapture
from attn_cli.views.matrix import View, plural, token_strip
from attn_cli.views.parts import header, top_lines, weights_matrix


def rollout_view(cap: Capture, rolled: np.ndarray, view: View) -> Group:
    title = (f"Attention rollout over {plural(cap.config.n_layers, 'layer')}: "
             "R = Â_L ··· Â_1, Â = rownorm(0.5·mean_heads(A) + 0.5·I)")
    holder = HeadCapture(layer=-1, head=-1, weights=rolled)
    return Group(header(cap, "rollout"), token_strip(cap.tokens), Text(),
                 Text(title, style="bold"), weights_matrix(cap, holder, view, title=None),
                 Text(f"top {view.top_k} input tokens each token draws on", style="italic"),
                 top_lines(cap, holder, view))
