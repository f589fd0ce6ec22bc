"""Attention is the formula: softmax(QKᵀ/√d_k + mask)·V, stage by stage and through the model.

The references here are written independently of attn_cli: a plain Python loop over (h, i, j)
with math.exp in float64, torch's fused `scaled_dot_product_attention`, and a block recomputed
by hand from the model's own parameters (after TransformerLens' test_abstract_attention.py).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attn_cli import models as M
from attn_cli.models.config import ModelConfig

NEG_INF = float("-inf")

# (n_heads, T, d_head); T = 1 included, odd sizes included.
SHAPES = [(1, 1, 1), (2, 1, 4), (1, 2, 3), (2, 3, 5), (3, 7, 8), (4, 12, 16), (1, 17, 2)]


def qkv(shape, seed, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(*shape, generator=g, dtype=torch.float32) for _ in range(3))
    return q * scale, k * scale, v


def loop_attention(q, k, v, causal):
    """Every stage of attention from the formula, one number at a time, in float64."""
    Q, K, V = (t.double().tolist() for t in (q, k, v))
    nh, T, hs = q.shape
    scores = [[[0.0] * T for _ in range(T)] for _ in range(nh)]
    scaled = [[[0.0] * T for _ in range(T)] for _ in range(nh)]
    masked = [[[0.0] * T for _ in range(T)] for _ in range(nh)]
    weights = [[[0.0] * T for _ in range(T)] for _ in range(nh)]
    output = [[[0.0] * hs for _ in range(T)] for _ in range(nh)]
    for h in range(nh):
        for i in range(T):
            for j in range(T):
                s = 0.0
                for d in range(hs):
                    s += Q[h][i][d] * K[h][j][d]
                scores[h][i][j] = s
                scaled[h][i][j] = s / math.sqrt(hs)
                masked[h][i][j] = NEG_INF if causal and j > i else scaled[h][i][j]
            top = max(masked[h][i])
            exps = [0.0 if x == NEG_INF else math.exp(x - top) for x in masked[h][i]]
            total = sum(exps)
            for j in range(T):
                weights[h][i][j] = exps[j] / total
            for d in range(hs):
                acc = 0.0
                for j in range(T):
                    acc += weights[h][i][j] * V[h][j][d]
                output[h][i][d] = acc
    as_t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    return {"scores": as_t(scores), "scaled": as_t(scaled), "masked": as_t(masked),
            "weights": as_t(weights), "output": as_t(output)}


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_attend_matches_the_formula_loop_at_every_stage(shape, causal):
    q, k, v = qkv(shape, seed=sum(shape) + causal)
    out, stages = M.attend(q, k, v, causal, keep_stages=True)
    ref = loop_attention(q, k, v, causal)

    assert set(stages) >= {"scores", "scaled", "masked", "weights"}
    nh, T, hs = shape
    for name in ("scores", "scaled", "masked", "weights"):
        assert stages[name].shape == (nh, T, T), name
        assert stages[name].dtype == torch.float32, name
        torch.testing.assert_close(stages[name], ref[name].float(), msg=name)
    assert out.shape == (nh, T, hs)
    torch.testing.assert_close(out, ref["output"].float())

    # The mask: −inf exactly above the diagonal when causal, nowhere when not.
    above = torch.ones(T, T, dtype=torch.bool).triu(1).expand(nh, T, T)
    is_neg_inf = torch.isneginf(stages["masked"])
    if causal:
        assert torch.equal(is_neg_inf, above)
    else:
        assert not is_neg_inf.any()
        assert torch.equal(stages["masked"], stages["scaled"])
    assert torch.isfinite(stages["masked"][~above if causal else slice(None)]).all()


@pytest.mark.parametrize("causal", [True, False])
def test_attend_without_stages_gives_the_same_output_and_weights(causal):
    q, k, v = qkv((3, 9, 4), seed=11)
    full_out, full = M.attend(q, k, v, causal, keep_stages=True)
    out, stages = M.attend(q, k, v, causal, keep_stages=False)
    assert torch.equal(out, full_out)
    assert set(stages) == {"weights"}
    assert torch.equal(stages["weights"], full["weights"])


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("shape", SHAPES + [(4, 64, 16), (2, 130, 32)],
                         ids=lambda s: "x".join(map(str, s)))
def test_attend_matches_torch_sdpa(shape, causal):
    q, k, v = qkv(shape, seed=3 * sum(shape) + causal)
    out, _ = M.attend(q, k, v, causal, keep_stages=False)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("scale", [0.01, 1.0, 30.0], ids=["flat", "normal", "sharp"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_weights_rows_sum_to_one_and_future_is_exactly_zero(causal, scale):
    nh, T, hs = 4, 33, 8
    q, k, v = qkv((nh, T, hs), seed=5, scale=scale)
    out, stages = M.attend(q, k, v, causal, keep_stages=False)
    w = stages["weights"]
    assert torch.isfinite(w).all() and torch.isfinite(out).all()
    assert (w >= 0).all() and (w <= 1).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(nh, T), atol=1e-6, rtol=0)
    upper = torch.ones(T, T, dtype=torch.bool).triu(1)
    if causal:
        assert (w[:, upper] == 0.0).all()  # exactly zero, not merely small
        assert torch.equal(w[:, 0, 0], torch.ones(nh))  # the first token sees only itself
    elif scale <= 1.0:  # moderate scores: every key gets some weight
        assert (w > 0).all()


# ---------------------------------------------------------------------------------------------
# The whole model, recomputed block by block from its own parameters.

def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def formula_positions(T, d):
    pe = [[0.0] * d for _ in range(T)]
    for p in range(T):
        for i in range(0, d, 2):
            angle = p / 10000 ** (i / d)
            pe[p][i] = math.sin(angle)
            if i + 1 < d:
                pe[p][i + 1] = math.cos(angle)
    return torch.tensor(pe, dtype=torch.float64)


def manual_forward(model, ids):
    """Hidden state after every block, final embeddings and every head's stages, by hand."""
    cfg = model.cfg
    d, nh, hs, T = cfg.d_model, cfg.n_heads, cfg.d_model // cfg.n_heads, len(ids)
    tok = torch.from_numpy(M.seeded_token_embeddings(ids, cfg.seed, d))
    x = tok + formula_positions(T, d).float()
    hidden, heads = [], {}
    with torch.no_grad():
        for layer, blk in enumerate(model.h):
            h = F.layer_norm(x, (d,), blk.ln_1.weight, blk.ln_1.bias, cfg.layer_norm_eps)
            W, b = blk.attn.c_attn.weight, blk.attn.c_attn.bias
            q, k, v = (F.linear(h, W[i * d:(i + 1) * d], b[i * d:(i + 1) * d]) for i in range(3))
            q, k, v = (t.reshape(T, nh, hs).permute(1, 0, 2) for t in (q, k, v))
            z = F.scaled_dot_product_attention(q, k, v, is_causal=cfg.causal)  # (nh, T, hs)
            scores = torch.einsum("hid,hjd->hij", q, k)
            scaled = scores / math.sqrt(hs)
            mask = torch.zeros(T, T)
            if cfg.causal:
                mask = mask.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), NEG_INF)
            masked = scaled + mask
            weights = torch.softmax(masked, dim=-1)
            for head in range(nh):
                heads[(layer, head)] = {
                    "x": h, "q": q[head], "k": k[head], "v": v[head], "scores": scores[head],
                    "scaled": scaled[head], "masked": masked[head], "weights": weights[head],
                    "output": z[head]}
            a = F.linear(z.permute(1, 0, 2).reshape(T, d), blk.attn.c_proj.weight,
                         blk.attn.c_proj.bias)
            x = x + a
            h2 = F.layer_norm(x, (d,), blk.ln_2.weight, blk.ln_2.bias, cfg.layer_norm_eps)
            m = F.linear(gelu_tanh(F.linear(h2, blk.mlp.c_fc.weight, blk.mlp.c_fc.bias)),
                         blk.mlp.c_proj.weight, blk.mlp.c_proj.bias)
            x = x + m
            hidden.append(x)
        emb = F.layer_norm(x, (d,), model.ln_f.weight, model.ln_f.bias, cfg.layer_norm_eps)
    return hidden, emb, heads


MODEL_CONFIGS = [
    ModelConfig(),
    ModelConfig(n_layers=3, n_heads=2, d_model=32, causal=False, seed=5),
    ModelConfig(n_layers=1, n_heads=1, d_model=8, d_ff=12, seed=2**31 + 7),
    ModelConfig(n_layers=2, n_heads=4, d_model=12, seed=99),  # d_head 3: odd sizes
]
# Token ids from across o200k (incl. 199999 = <|endoftext|>): the seeded model needs no table.
IDS = [976, 9059, 10139, 402, 290, 2450, 2236, 480, 673, 23060, 13, 199_999, 5, 100_000]


def cfg_id(cfg):
    return f"L{cfg.n_layers}H{cfg.n_heads}D{cfg.d_model}{'c' if cfg.causal else 'b'}"


@pytest.mark.parametrize("cfg", MODEL_CONFIGS, ids=cfg_id)
@pytest.mark.parametrize("T", [1, 2, len(IDS)])
def test_model_forward_equals_blocks_recomputed_by_hand(cfg, T):
    model = M.seeded(cfg)
    ids = IDS[:T]
    hidden, emb, heads = manual_forward(model, ids)
    all_heads = {layer: tuple(range(cfg.n_heads)) for layer in range(cfg.n_layers)}
    fwd = model(ids, keep=all_heads, keep_stages=True)

    torch.testing.assert_close(model.embed(ids), torch.from_numpy(
        M.seeded_token_embeddings(ids, cfg.seed, cfg.d_model)) + formula_positions(
            T, cfg.d_model).float())
    assert len(fwd.hidden) == cfg.n_layers
    for layer in range(cfg.n_layers):
        assert fwd.hidden[layer].shape == (T, cfg.d_model)
        torch.testing.assert_close(fwd.hidden[layer], hidden[layer], msg=f"hidden {layer}")
    torch.testing.assert_close(fwd.embeddings, emb)

    assert set(fwd.heads) == set(heads)
    for key, stages in heads.items():
        got = fwd.heads[key]
        assert set(got) == set(M.STAGES), key
        for name, expected in stages.items():
            torch.testing.assert_close(got[name], expected, msg=f"{key} {name}")


@pytest.mark.parametrize("cfg", MODEL_CONFIGS[:2] + MODEL_CONFIGS[3:], ids=cfg_id)
def test_keeping_some_heads_changes_nothing_but_what_is_kept(cfg):
    """The SDPA path (heads not kept) and the explicit path (kept heads) give one model."""
    model = M.seeded(cfg)
    hidden, emb, heads = manual_forward(model, IDS)
    last, nh = cfg.n_layers - 1, cfg.n_heads
    runs = {
        "all": {layer: tuple(range(nh)) for layer in range(cfg.n_layers)},
        "none": None,
        "empty": {},
        "one": {last: (nh - 1,)},
        "some": {0: tuple(range(0, nh, 2))},
    }
    for label, keep in runs.items():
        fwd = model(IDS, keep=keep, keep_stages=True)
        expected_keys = {(layer, head) for layer, hs_ in (keep or {}).items() for head in hs_}
        assert set(fwd.heads) == expected_keys, label
        for layer in range(cfg.n_layers):
            torch.testing.assert_close(fwd.hidden[layer], hidden[layer],
                                       msg=f"{label}: hidden {layer}")
        torch.testing.assert_close(fwd.embeddings, emb, msg=label)
        for key in expected_keys:
            for name, expected in heads[key].items():
                torch.testing.assert_close(fwd.heads[key][name], expected,
                                           msg=f"{label}: {key} {name}")


def test_keep_one_head_in_layer_one_keeps_only_that_head():
    cfg = ModelConfig()
    model = M.seeded(cfg)
    ref = model(IDS, keep=None)
    fwd = model(IDS, keep={1: (2,)}, keep_stages=True)
    assert list(fwd.heads) == [(1, 2)]
    assert set(fwd.heads[(1, 2)]) == set(M.STAGES)
    without_stages = model(IDS, keep={1: (2,)}, keep_stages=False)
    assert set(without_stages.heads[(1, 2)]) == {"weights"}
    torch.testing.assert_close(without_stages.heads[(1, 2)]["weights"],
                               fwd.heads[(1, 2)]["weights"])
    for a, b in zip(fwd.hidden, ref.hidden):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(fwd.embeddings, ref.embeddings)


@pytest.mark.parametrize("keep, nh", [((1, 0), 2), ((3, 2, 1, 0), 4), ((0, 0), 2)])
def test_head_order_in_keep_does_not_change_which_head_is_which(keep, nh):
    cfg = ModelConfig(n_layers=1, n_heads=nh, d_model=8 * nh)
    model = M.seeded(cfg)
    _, _, heads = manual_forward(model, IDS)
    fwd = model(IDS, keep={0: keep}, keep_stages=True)
    assert set(fwd.heads) == {(0, h) for h in keep}
    for head in set(keep):
        torch.testing.assert_close(fwd.heads[(0, head)]["weights"], heads[(0, head)]["weights"])


# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 2, 3, 7, 16, 64])
@pytest.mark.parametrize("T", [1, 5, 61])
def test_sinusoidal_positions_follow_attention_is_all_you_need(T, d):
    pe = M.sinusoidal_positions(T, d)
    assert pe.shape == (T, d)
    assert pe.dtype == torch.float32
    torch.testing.assert_close(pe, formula_positions(T, d).float())


def test_sinusoidal_positions_have_no_length_limit():
    T, d = 5000, 16
    pe = M.sinusoidal_positions(T, d)
    for p in (0, 1, 4095, 4999):
        torch.testing.assert_close(pe[p], formula_positions(p + 1, d)[p].float())
    # the first 20 positions of a long table are the same as those of a short one
    assert torch.equal(pe[:20], M.sinusoidal_positions(20, d))
