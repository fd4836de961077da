"""docs/sequences.md: padding, packing and the recurrent layers' shapes, the RNN by hand, vanishing gradients, RNN
practice, attention and its masks against PyTorch's (a query that may see no key included), the transformer block,
time series, the projects' models, the language model's training and evaluation, bad input, and the recorded runs
against every claim the page makes.

The page's blocks run once here in page order (the ``page`` and ``printed`` fixtures of tests/conftest.py); the
tests that need other inputs call the module's functions."""

import math
import re

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F
from conftest import (  # noqa: F401 (test_the_page_prints_what_its_build_shows: a test)
    DOCS,
    check_chosen_on_validation,
    run_sections,
    snippet_sections,
    test_the_page_prints_what_its_build_shows,
)
from torch import nn

import benchmarks.sequences as bench
import snippets.sequences as s
from site_tools.records import check_fresh, read_record


def test_padding_masks_and_packing(page, printed):
    assert page.padded.tolist() == [[5, 2, 9, 4], [7, 1, 0, 0], [3, 8, 6, 0]]
    assert page.mask.sum().item() == 9 and "steps computed: 9 of 12" in printed
    assert "sequences still running at each step: [3, 3, 2, 1]" in printed
    assert torch.equal(page.embedding(torch.tensor([0])), torch.zeros(1, 4))  # padding_idx


def test_recurrent_layer_shapes(printed):
    assert "RNN  out (3, 4, 6)  h (1, 3, 6)" in printed
    assert "LSTM out (3, 4, 12) h (4, 3, 6) c (4, 3, 6)" in printed  # 2 layers x 2 directions; batch second
    assert "GRU  out (3, 4, 6)  h (1, 3, 6)" in printed


def test_packed_state_is_the_last_real_step_and_the_padded_one_is_not(printed):
    assert "packed: h is each sequence's state at its last token: True" in printed
    assert "padded: out[:, -1] is: False" in printed


def test_the_rnn_by_hand_equals_nn_rnn_for_other_weights_too(page):
    torch.manual_seed(5)
    rnn = nn.RNN(3, 7, batch_first=True)
    x = torch.randn(2, 9, 3)
    assert torch.allclose(page.rnn_by_hand(rnn, x), rnn(x)[0], atol=1e-6)


def test_vanishing_gradients_as_the_page_says(page):
    rnn, lstm, opened = (page.curves[name] for name in ("RNN (tanh)", "LSTM", "LSTM, forget bias 3"))
    assert rnn[50] / rnn[99] < 1e-10  # "at input step 50 ... down by more than ten orders of magnitude"
    assert lstm[0] / lstm[99] < 1e-6  # the default LSTM still vanishes
    assert 0.1 < opened[0] / opened[99] < 10  # "reaches step 0 undiminished"
    assert page.ax.get_title() == "How much each input step moves the last output"


def test_the_default_recurrent_weights_are_small_and_an_orthogonal_start_vanishes_more_slowly(page):
    torch.manual_seed(0)
    default = nn.RNN(8, 32, batch_first=True)
    assert torch.linalg.eigvals(default.weight_hh_l0).abs().max() < 1  # "small eigenvalues"
    orthogonal = nn.RNN(8, 32, batch_first=True)
    nn.init.orthogonal_(orthogonal.weight_hh_l0)
    plain, kept = page.gradient_per_step(default), page.gradient_per_step(orthogonal)
    assert kept[50] / kept[99] > 1e3 * plain[50] / plain[99]  # "vanishes far more slowly"


def test_the_state_layout_clipping_and_truncated_backpropagation(page, printed):
    assert "h (4, 3, 6) is layers x directions, batch, hidden: (2, 2, 3, 6)" in printed
    assert "last layer forward = out[:, -1, :6]: True" in printed
    assert "last layer backward = out[:, 0, 6:]: True" in printed  # the backward direction ends at step 0
    assert "gradient norm above 1: True; clipped to 1.00" in printed
    reset = float(re.search(r"state reset at every chunk: loss ([\d.]+) over the last 10 chunks", printed)[1])
    carried = float(re.search(r"state carried: loss ([\d.]+) over the last 10 chunks", printed)[1])
    assert carried < 0.1 and reset > 3 * carried  # the carried state tells it where in the pattern it is
    assert "RuntimeError: Trying to backward through the graph a second time" in printed
    # the detached state keeps its values, without a graph
    assert not page.state.requires_grad and page.state.grad_fn is None


def test_attention_equals_pytorch_with_and_without_masks(printed):
    assert printed.count("equal to F.scaled_dot_product_attention: True") == 2
    assert "causal, equal to is_causal=True: True" in printed
    assert "padding ignored: True" in printed
    assert "weights of query 0, sequence 2:" in printed and "0.   0.  ]" in printed


def test_multihead_attention_on_a_sequence_without_a_visible_key_as_the_page_says():
    torch.manual_seed(0)
    mha, x = nn.MultiheadAttention(8, 2, batch_first=True), torch.randn(2, 4, 8)
    hidden = torch.tensor([[False] * 4, [True] * 4])  # the second sequence: every key hidden

    def second(need_weights, train=True, grad=True):
        mha.train(train)
        with torch.set_grad_enabled(grad):
            return mha(x, x, x, key_padding_mask=hidden, need_weights=need_weights)[0][1]

    assert second(need_weights=True).isnan().all() and second(need_weights=True, train=False).isnan().all()
    assert second(need_weights=False, train=False, grad=False).isnan().all()  # the inference fast path
    assert (second(need_weights=False) == 0).all() and (second(need_weights=False, train=False) == 0).all()
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval()
    with torch.no_grad():
        assert layer(x, src_key_padding_mask=hidden)[1].isnan().all()


@pytest.mark.parametrize("shape", [(4, 7, 16), (2, 3, 5, 8)])
def test_attention_equals_sdpa_on_other_shapes_and_a_random_mask_with_empty_rows(shape):
    torch.manual_seed(1)
    q, k, v = torch.randn(3, *shape).unbind(0)
    mask = torch.rand(*shape[:-2], shape[-2], shape[-2]) > 0.6
    mask[..., 0, :] = False  # a query that may see no key
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(s.attention(q, k, v, mask), expected, atol=1e-6)
    shared = mask[(0,) * (len(shape) - 2)].expand(*(1,) * (len(shape) - 2), -1, -1)  # one mask for every sequence
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=shared)
    assert torch.allclose(s.attention(q, k, v, shared), expected, atol=1e-6)


def test_a_query_that_sees_no_key_gives_zeros_and_no_nan_even_in_the_next_block(printed):
    """E1: a causal mask with left padding leaves the first query with no visible key."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 8).unbind(0)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    present = torch.tensor([[False, True, True, True], [True] * 4])
    mask = causal & present[:, None, :]
    q.requires_grad_(True)
    ours = s.attention(q, k, v, mask)
    assert torch.equal(ours[0, 0], torch.zeros(8)) and not ours.isnan().any()
    assert torch.allclose(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6)
    ours.sum().backward()
    assert q.grad.isfinite().all()
    again = s.attention(ours, ours, ours, mask)  # the next block reads the zeros: still no NaN
    assert not again.isnan().any()
    plain = (q @ k.transpose(-2, -1) / 8**0.5).masked_fill(~mask, -math.inf).softmax(-1) @ v
    assert plain[0, 0].isnan().all()  # what the page warns of: a plain softmax
    assert "no NaN: True" in printed and "rows of zeros: True" in printed
    assert "mean over real positions: (2, 8)" in printed


def test_nn_multihead_attention_still_gives_nan_for_a_fully_padded_sequence_as_the_page_says():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)  # training mode
    x = torch.randn(2, 4, 8)
    out, _ = mha(x, x, x, key_padding_mask=torch.tensor([[False] * 4, [True] * 4]))
    assert out[1].isnan().all() and not out[0].isnan().any()


def test_is_causal_aligns_to_the_top_left_as_the_page_warns():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 1, 4, 8).unbind(0)
    one_query = q[:, -1:]  # the newest position against 4 cached keys
    flagged = F.scaled_dot_product_attention(one_query, k, v, is_causal=True)
    assert torch.allclose(flagged, v[:, :1], atol=1e-6)  # key 0 only
    assert not torch.allclose(flagged, F.scaled_dot_product_attention(one_query, k, v), atol=1e-3)


def test_a_padding_mask_without_its_query_axis_is_refused_even_when_batch_equals_length():
    """M5: batch 5, 5 tokens: a batch x keys mask would broadcast as queries x keys."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 5, 5, 8).unbind(0)
    keys_present = torch.arange(5) < torch.tensor([5, 3, 4, 2, 5])[:, None]
    with pytest.raises(ValueError, match=r"mask \(5, 5\) for scores \(5, 5, 5\)"):
        s.attention(q, k, v, keys_present)
    right = s.attention(q, k, v, keys_present[:, None, :])
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=keys_present[:, None, :])
    assert torch.allclose(right, expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"mask \(3, 1, 5\)"):  # made for a batch of 3
        s.attention(q[:2], k[:2], v[:2], keys_present[:3, None, :])
    with pytest.raises(ValueError, match="give every axis"):
        s.MultiHeadAttention(8, 2)(torch.randn(5, 5, 8), keys_present[:, None, :])  # 3 axes for 4-d scores
    with pytest.raises(TypeError, match="True/False"):
        s.attention(q, k, v, keys_present[:, None, :].float())


def test_multihead_attention_runs_on_sdpa_and_equals_nn_multihead_attention(page, printed, monkeypatch):
    assert "equal to nn.MultiheadAttention: True" in printed
    torch.manual_seed(2)
    x = torch.randn(3, 6, 8)
    expected, weights = page.theirs(x, x, x, need_weights=False)
    assert weights is None and torch.allclose(page.ours(x), expected, atol=1e-6)
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(s.F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    causal = page.ours(x, is_causal=True)
    assert calls and calls[-1]["is_causal"] is True
    q, k, v = (t.reshape(3, 6, 2, 4).transpose(1, 2) for t in page.ours.qkv(x).chunk(3, -1))
    mask = torch.ones(6, 6, dtype=torch.bool).tril()[None, None]
    by_hand = page.ours.out(s.attention(q, k, v, mask).transpose(1, 2).reshape(3, 6, 8))
    assert torch.allclose(causal, by_hand, atol=1e-6)


def test_attention_needs_positions(printed):
    assert "no positions, output shuffled alike: True" in printed and "with positions: False" in printed
    codes = s.sinusoidal_positions(50, 16)
    assert codes.shape == (50, 16) and codes[0, 0::2].abs().max() == 0 and torch.all(codes[0, 1::2] == 1)
    odd = s.sinusoidal_positions(10, 7)  # an odd width works too (S7): 4 sines, 3 cosines
    position = torch.arange(10.0)[:, None]
    frequency = torch.exp(torch.arange(0, 7, 2) * (-math.log(10000.0) / 7))
    assert torch.allclose(odd[:, 0::2], torch.sin(position * frequency))
    assert torch.allclose(odd[:, 1::2], torch.cos(position * frequency[:3]))


def test_the_block_equals_the_encoder_layer(printed):
    assert "equal to nn.TransformerEncoderLayer(norm_first=True): True" in printed


def test_the_projects_models_take_mnist_rows(printed):
    assert re.search(r"RowLSTM +[\d,]+ parameters, logits \(4, 10\)", printed)
    assert re.search(r"PatchTransformer +[\d,]+ parameters, logits \(4, 10\)", printed)
    model = s.PatchTransformer()
    images = torch.randn(2, 784)
    patches = images.reshape(2, 28, 28)[:, 7:14, 14:21].reshape(2, 49)  # patch 6: row 1, column 2
    grid = images.reshape(2, 4, 7, 4, 7).permute(0, 1, 3, 2, 4).reshape(2, 16, 49)
    assert torch.equal(grid[:, 6], patches) and model(images).shape == (2, 10)


def test_time_series_windows_split_and_forecast(page, printed):
    series = s.noisy_oscillation(300, seed=1)
    x, y = s.windows(series, 4)
    assert x.shape == (296, 4, 1) and torch.equal(x[10, :, 0], series[10:14]) and y[10] == series[14]
    assert torch.equal(series, s.noisy_oscillation(300, seed=1))  # seeded
    assert page.mean == page.series[:1200].mean() and page.std == page.series[:1200].std()  # training part only
    assert "{'train': (1184, 16, 1), 'validation': (384, 16, 1), 'test': (384, 16, 1)}" in printed
    for name in ("validation", "test"):
        gru, last, rule = map(
            float, re.search(rf"{name} +GRU ([\d.]+), last value ([\d.]+), the rule itself ([\d.]+)", printed).groups()
        )
        assert abs(rule - 0.5) < 0.04 and gru < rule + 0.03 and last > 1.3 * rule  # "as well as the rule"
    long = s.noisy_oscillation(20_000, seed=2)
    steps = long[2:] - 20, long[1:-1] - 20, long[:-2] - 20
    residual = steps[0] - 1.5 * steps[1] + 0.75 * steps[2]
    assert abs(residual.std() - 0.5) < 0.01  # the noise: the best forecast's error
    last_value = (long[1:] - long[:-1]).pow(2).mean().sqrt()
    assert abs(last_value - 0.78) < 0.02  # "about 0.78 over a long run, 1.6 times the noise"


def test_the_vocabulary_maps_unseen_characters_to_unk(printed):
    vocabulary = s.Vocabulary("abca")
    assert vocabulary.characters == ["<unk>", "a", "b", "c"] and len(vocabulary) == 4
    assert vocabulary.encode("cab?").tolist() == [3, 1, 2, 0]
    assert vocabulary.decode(vocabulary.encode("ab?")) == "ab<unk>"
    assert "unseen characters become <unk>: <unk>a" in printed


def test_the_toy_text_baselines_and_the_untrained_model(printed):
    unigram, bigram = map(float, re.search(r"baselines: unigram ([\d.]+), bigram ([\d.]+) bits", printed).groups())
    untrained = float(re.search(r"untrained: ([\d.]+) bits", printed)[1])
    log2_vocabulary = float(re.search(r"log2 of \d+ = ([\d.]+)", printed)[1])
    assert bigram < unigram < log2_vocabulary and abs(untrained - log2_vocabulary) < 0.5


def test_bigram_and_unigram_bits_of_known_distributions():
    train = torch.tensor([0, 0, 1, 1])  # with add-one smoothing: p = 3/6, 3/6 over 2 symbols
    assert s.unigram_bits(train, torch.tensor([0, 1]), 2) == pytest.approx(1.0)
    assert s.unigram_bits(train, torch.tensor([0]), 4) == pytest.approx(-math.log2(3 / 8))
    # pairs 0->0, 0->1, 1->1: after 0, counts 1+1 and 1+1; after 1: 0+1 and 1+1
    assert s.bigram_bits(train, torch.tensor([1, 0]), 2) == pytest.approx(-math.log2(1 / 3))
    assert s.bigram_bits(train, torch.tensor([0, 1]), 2) == pytest.approx(1.0)


def test_the_language_model_ties_its_head_and_starts_at_one_scale():
    torch.manual_seed(0)
    model = s.CharTransformer(50, context=16, d_model=64, heads=2, depth=2)
    assert model.head.weight is model.embed.weight and model.head.bias is None
    for table in (model.embed.weight, model.positions, model.blocks[0].mlp[0].weight):
        assert 0.015 < table.std().item() < 0.025
    assert all(block.mlp[0].bias.abs().max() == 0 for block in model.blocks)


def test_the_language_model_reads_no_values_in_forward_so_it_compiles_in_one_graph():
    model = s.CharTransformer(20, context=8, d_model=8, heads=2, depth=1)
    explanation = torch._dynamo.explain(model)(torch.randint(0, 20, (2, 8)))
    assert explanation.graph_break_count == 0


def test_weight_decay_only_on_the_weight_matrices(page, printed):
    model = page.model
    decay, rest = s.parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    linears = [m.weight for m in model.modules() if isinstance(m, nn.Linear) and m is not model.head]
    assert {id(p) for p in decay["params"]} == {id(w) for w in linears}
    assert any(p is model.embed.weight for p in rest["params"]) and any(p is model.positions for p in rest["params"])
    assert len(decay["params"]) + len(rest["params"]) == len(list(model.parameters()))  # the tied one once
    assert "head and embedding, one tensor: True" in printed
    assert "weight decay on 8 matrices, not on 20 other tensors" in printed


def test_warm_up_then_cosine():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = s.warmup_cosine(optimizer, warmup=10, steps=110)
    rates = []
    for _ in range(120):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)  # linear warm-up
    assert rates[60] == pytest.approx(0.1 + 0.9 * 0.5) and rates[110] == pytest.approx(0.1) == rates[119]
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))  # then only down


def test_the_training_loop_clips_and_learns(monkeypatch, printed):
    norms = []
    real = nn.utils.clip_grad_norm_
    monkeypatch.setattr(s.nn.utils, "clip_grad_norm_", lambda p, c: norms.append(c) or real(p, c))
    torch.manual_seed(0)
    model = s.CharTransformer(5, context=8, d_model=16, heads=2, depth=1)
    ids = torch.arange(200) % 5
    optimizers, rates = [], []
    real_adamw = torch.optim.AdamW

    def adamw(groups, **kwargs):  # the optimizer it builds, and its learning rate at every step
        optimizer = real_adamw(groups, **kwargs)
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: rates.append(opt.param_groups[0]["lr"]))
        optimizers.append(optimizer)
        return optimizer

    monkeypatch.setattr(s.torch.optim, "AdamW", adamw)
    losses = s.train_language_model(model, ids, steps=30, batch_size=8, max_lr=1e-2, weight_decay=0.2, clip=0.5)
    assert norms == [0.5] * 30 and len(losses) == 30 and losses[-1] < losses[0] / 2
    decay, rest = optimizers[0].param_groups  # parameter_groups' two groups, with the given decay
    assert (decay["weight_decay"], rest["weight_decay"]) == (0.2, 0.0)
    assert any(p is model.positions for p in rest["params"])
    assert rates[:3] == pytest.approx([1e-2 / 3, 2e-2 / 3, 1e-2])  # a tenth of the steps of warm-up
    assert rates[-1] < 0.2e-2 and all(a >= b for a, b in zip(rates[2:], rates[3:]))  # then down the cosine
    first, last = map(float, re.search(r"training loss: ([\d.]+) -> ([\d.]+) bits", printed).groups())
    bits, perplexity = map(
        float, re.search(r"validation: ([\d.]+) bits per character, perplexity ([\d.]+)", printed).groups()
    )
    assert last < first and perplexity == pytest.approx(2**bits, abs=0.01)


class Uniform(nn.Module):
    context = 8

    def forward(self, ids):
        return torch.zeros(*ids.shape, 6)


def reference_bits(model, ids, stride):
    """Each target scored by the first window (in order) that reaches it: a dictionary, not an index calculation."""
    nats, start = {}, 0
    while True:
        window = ids[start : start + model.context + 1]
        with torch.no_grad():
            losses = F.cross_entropy(model(window[None, :-1])[0], window[1:], reduction="none")
        for offset, loss in enumerate(losses):
            nats.setdefault(start + 1 + offset, loss.item())
        if start + model.context + 1 >= len(ids):
            break
        start = min(start + stride, len(ids) - model.context - 1)
    assert sorted(nats) == list(range(1, len(ids)))
    return sum(nats.values()) / len(nats) / math.log(2)


@pytest.mark.parametrize("length", [5, 9, 30, 37])
def test_bits_per_character_scores_every_character_once_with_a_sliding_window(length):
    ids = torch.randint(0, 6, (length,), generator=torch.Generator().manual_seed(length))
    assert s.bits_per_character(Uniform(), ids) == pytest.approx(math.log2(6))
    torch.manual_seed(0)
    model = s.CharTransformer(6, context=8, d_model=8, heads=2, depth=1).train()
    s.bits_per_character(model, ids)
    assert model.training  # its mode restored
    model.eval()
    assert s.bits_per_character(model, ids, batch_size=3) == pytest.approx(reference_bits(model, ids, 4), rel=1e-5)
    if length <= 9:  # one window: the plain loss
        assert s.bits_per_character(model, ids) == pytest.approx(
            s.next_character_loss(model, ids[None]).item() / math.log(2), rel=1e-5
        )


def test_sampling_is_seeded_in_eval_mode_and_top_k_and_top_p_restrict_it():
    torch.manual_seed(0)
    model = s.CharTransformer(10, context=8, d_model=8, heads=2, depth=1)
    model.train()
    prompt = torch.tensor([1, 2, 3])
    one = s.sample(model, prompt, 20, 0.5, generator=torch.Generator().manual_seed(3))
    two = s.sample(model, prompt, 20, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(one, two) and len(one) == 20  # longer than the context: the last 8 are read
    assert model.training  # its mode restored

    modes = []
    hook = model.blocks[0].register_forward_pre_hook(lambda module, args: modes.append(module.training))
    s.sample(model, prompt, 3)
    hook.remove()
    assert modes == [False] * 3  # every step in eval mode

    def greedy(ids):
        with torch.no_grad():
            return model.eval()(ids[None])[0, -1].argmax()

    for settings in ({"top_k": 1}, {"top_p": 1e-6}):  # one id left: the likeliest, whatever the draw
        drawn = s.sample(model, prompt, 1, **settings, generator=torch.Generator().manual_seed(9))
        assert drawn.item() == greedy(prompt)
    top3 = model.eval()(prompt[None])[0, -1].topk(3).indices.tolist()
    draws = {s.sample(model, prompt, 1, top_k=3, generator=torch.Generator().manual_seed(i)).item() for i in range(40)}
    assert draws <= set(top3) and len(draws) > 1

    class Ramp(nn.Module):  # the same logits 0, 1, ..., 9 after any context
        context, vocabulary_size = 8, 10

        def forward(self, ids):
            return torch.arange(10.0).expand(*ids.shape, 10)

    def entropy(temperature):  # of the ids drawn after the prompt, over 300 draws
        seeds = [torch.Generator().manual_seed(i) for i in range(300)]
        drawn = torch.cat([s.sample(Ramp(), prompt, 1, temperature, generator=seed) for seed in seeds])
        p = torch.bincount(drawn, minlength=10).float() / len(drawn)
        return -(p[p > 0] * p[p > 0].log()).sum().item()

    assert entropy(0.3) < entropy(1.0) < entropy(3.0)  # below 1 sharpens, above 1 flattens
    with pytest.raises(ValueError, match="temperature 0"):
        s.sample(model, prompt, 5, 0)
    for settings, message in [
        ({"top_k": 0}, "top_k 0: use 1 to 10"),
        ({"top_p": 0.0}, "top_p 0.0"),
        ({"top_p": 1.5}, "top_p 1.5"),
    ]:
        with pytest.raises(ValueError, match=message):
            s.sample(model, prompt, 5, **settings)
    with pytest.raises(ValueError, match="token ids from 1 to 12: the vocabulary has ids 0 to 9"):
        s.sample(model, torch.tensor([1, 12]), 5)
    with pytest.raises(ValueError, match="token ids from 1 to 10: the vocabulary has ids 0 to 9"):
        s.sample(model, torch.tensor([1, 10]), 5)  # the vocabulary's size is one too many


def test_the_causal_model_does_not_look_ahead():
    torch.manual_seed(0)
    model = s.CharTransformer(20, context=16, d_model=16, heads=2, depth=2).eval()
    ids = torch.randint(0, 20, (1, 16))
    changed = ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 20
    with torch.no_grad():
        assert torch.allclose(model(ids)[0, :10], model(changed)[0, :10], atol=1e-6)
        assert not torch.allclose(model(ids)[0, 10:], model(changed)[0, 10:], atol=1e-3)


def test_bad_input_gets_a_clear_error(printed):
    errors = [line for line in printed.splitlines() if line.startswith(("ValueError:", "TypeError:"))]
    assert len(errors) == 4
    assert "a sequence of 40 tokens: this model reads at most 32" in errors[0]
    assert "token ids from 1 to 99: the vocabulary has ids 0 to" in errors[1]
    assert "mask (2, 5) for scores (2, 5, 5)" in errors[2]  # the padding mask without its query axis
    assert "mask (5, 4) for scores (2, 5, 5)" in errors[3]
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        s.MultiHeadAttention(8, 3)
    with pytest.raises(FileNotFoundError, match="no .md files"):
        s.read_pages(DOCS / "records")
    with pytest.raises(IndexError, match="index out of range"):  # what the check saves a reader from, on a CPU
        s.CharTransformer(5, context=4, d_model=4, heads=1, depth=1)(torch.tensor([[1, 7]]))


def test_the_exercises(printed):
    gru = re.search(
        r"GRU: the gradient at step 0 is ([\d.e+-]+) of step 99's\nupdate-gate bias 3: ([\d.e+-]+)", printed
    )
    assert float(gru[1]) < 1e-10 < 1e-4 < float(gru[2])
    rows = re.findall(r"scale ([\d.]+): largest weight per query \[\[([\d. ]+)\]\]", printed)
    unscaled, scaled = ([float(w) for w in weights.split()] for _, weights in rows)
    assert min(unscaled) > 0.5 and max(unscaled) > 0.95 and max(scaled) < 0.5  # "most of the weight", "nearly all"


# --- the recorded runs: python -m benchmarks.sequences --data-root data --record


@pytest.fixture(scope="module")
def record():
    return read_record("sequences")


def test_the_record_is_current():
    check_fresh(read_record("sequences"))


def test_the_mnist_recipes_are_chosen_on_validation_and_tested_over_five_seeds(record):
    projects = record["metrics"]["mnist"]
    assert set(projects) == set(bench.MNIST_CANDIDATES)
    for project in projects.values():
        check_chosen_on_validation(project)
    assert record["metrics"]["threads"] == 2


def test_the_mnist_table_claims(record):
    projects = record["metrics"]["mnist"]
    lstm, transformer = projects["LSTM over rows"], projects["transformer over patches"]
    cnn = read_record("cnn")["metrics"]["like_the_mlp"]["test"]["mean"]
    assert cnn > max(lstm["test"]["mean"], transformer["test"]["mean"])  # "the CNN is the best fit for images"

    def seconds(project):
        return sum(sum(run["epoch_seconds"]) for run in project["runs"])

    assert transformer["parameters"] > lstm["parameters"] and seconds(transformer) > seconds(lstm)
    like = read_record("cnn")["metrics"]
    assert 0.3 < like["chapter"]["parameters"] / lstm["parameters"] < 0.4  # "about a third of the LSTM's parameters"
    assert 0.4 < seconds(like["like_the_mlp"]) / seconds(lstm) < 0.65  # "about half its seconds per run"
    mlp = read_record("mnist")["metrics"]["chapter"]["test_accuracy_mean"]
    assert min(lstm["test"]["mean"], transformer["test"]["mean"], cnn) > mlp  # "all three models beat the MLP"
    assert transformer["test"]["mean"] < lstm["test"]["mean"]  # "the lowest accuracy of the three"


def test_the_language_model_beats_both_baselines_by_a_wide_margin(record):
    lm = record["metrics"]["language_model"]
    check_chosen_on_validation(lm, best=min)
    assert lm["test"]["mean"] < lm["baselines"]["bigram"] - 0.5 < lm["baselines"]["unigram"] - 0.5
    assert lm["test"]["max"] < lm["baselines"]["bigram"] - 1.5  # "more than a bit and a half ... on every seed"
    assert all(60 < run["train_seconds"] < 120 for run in lm["runs"])  # "a minute and a half on 2 CPU threads"
    rates = [candidate["config"]["max_lr"] for candidate in lm["candidates"]]
    assert lm["config"]["max_lr"] == max(rates) and len(rates) == 2  # "the higher of the two"
    chosen = next(t for t in lm["candidates"] if t["name"] == lm["chosen"])
    assert lm["test"]["mean"] < chosen["validation"]  # "the test part scores better than the validation part"
    marks = "".join(drawn["text"][3:] for drawn in lm["samples"])  # after the prompt
    assert marks.count("`") >= 2  # "the marks of its Markdown (backticks around code)"
    assert [drawn["settings"] for drawn in lm["samples"]] == list(bench.SAMPLES)
    words = lm["samples"][1]["text"].split()  # top-k 10: the guide's frequent words
    assert sum(word in {"the", "a", "and", "is", "of", "to", "in", "it"} for word in words) >= 3


REPORT = "benchmarks/reports/sequences.py"


def test_the_recorded_results_render():
    plt.close("all")
    _, outputs = run_sections(REPORT, list(snippet_sections(REPORT)))
    out = "".join(outputs)
    assert out.count('class="guide-record"') == 3 and "perplexity at the mean" in out
    plt.close("all")


def test_bits_per_character_refuses_a_stride_that_skips_characters_or_too_few_ids():
    ids = torch.arange(30) % 6
    assert s.bits_per_character(Uniform(), ids, stride=8) == pytest.approx(math.log2(6))  # the whole context
    for stride in (0, 9):
        with pytest.raises(ValueError, match=f"stride {stride}: use 1 to the context, 8"):
            s.bits_per_character(Uniform(), ids, stride=stride)
    with pytest.raises(ValueError, match="1 ids: a prediction needs at least 2"):
        s.bits_per_character(Uniform(), ids[:1])


def test_an_empty_text_encodes_to_token_ids():
    empty = s.Vocabulary("abc").encode("")
    assert empty.dtype == torch.long and empty.shape == (0,)
