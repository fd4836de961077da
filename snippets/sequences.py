"""Sequences and attention: the code of docs/sequences.md.

Sequences as tensors (padding, masks, packing), recurrent layers (RNN, LSTM,
GRU; one RNN step by hand; vanishing gradients; the practice of training them),
attention from scratch (scaled dot-product with safe masks, multi-head on
PyTorch's fused attention, positions, a transformer block), time series
(windows, a chronological split, statistics of the training part only), and
the models of the chapter's two projects: MNIST read as sequences (an LSTM over
rows, a transformer over patches) and a character-level language model trained
on the guide's own pages, with its training loop and its evaluation.
benchmarks/sequences.py trains and records them. Definitions are at module
level; what the page runs is at the end, at module level.
"""

# --8<-- [start:attention]
import math

import torch


def check_mask(mask, scores_shape):
    """A boolean mask with every axis of the scores (size 1 where it is shared):
    a mask missing an axis would be read as another axis, silently."""
    if mask.dtype != torch.bool:
        raise TypeError(f"mask of dtype {mask.dtype}: use True/False values")
    scores_shape = tuple(scores_shape)
    try:
        fits = torch.broadcast_shapes(mask.shape, scores_shape) == scores_shape
    except RuntimeError:
        fits = False
    if len(mask.shape) != len(scores_shape) or not fits:
        raise ValueError(
            f"mask {tuple(mask.shape)} for scores {scores_shape} (... x queries x "
            "keys): give every axis, 1 where it is shared (a padding mask "
            "batch x 1 x keys, one causal mask for all 1 x queries x keys)"
        )


def attention(q, k, v, mask=None):
    """Scaled dot-product attention: softmax(q k^T / sqrt(d)) v.

    q: ... x queries x d, k and v: ... x keys x d. mask (bool, optional): True
    where a query may look at a key, with the scores' every axis (check_mask).
    A query that may look at no key gets zeros, as in PyTorch's own."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is None:
        return scores.softmax(dim=-1) @ v
    check_mask(mask, scores.shape)
    seen = mask.any(dim=-1, keepdim=True)  # False: this query may see no key
    scores = scores.masked_fill(~mask, float("-inf")).masked_fill(~seen, 0.0)
    weights = scores.softmax(dim=-1)  # a row of -inf only would give NaN
    return weights.masked_fill(~seen, 0.0) @ v


# --8<-- [end:attention]


# --8<-- [start:multihead]
import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """Self-attention with ``heads`` heads of size d_model / heads each, on
    PyTorch's fused scaled_dot_product_attention."""

    def __init__(self, d_model, heads):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)  # the three projections at once
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x, mask=None, is_causal=False):
        batch, length, d_model = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        # batch x length x d_model -> batch x heads x length x head size
        q, k, v = (
            t.reshape(batch, length, self.heads, -1).transpose(1, 2)
            for t in (q, k, v)
        )
        if mask is not None:
            check_mask(mask, (batch, self.heads, length, length))
        mixed = F.scaled_dot_product_attention(  # each head attends on its own
            q, k, v, attn_mask=mask, is_causal=is_causal
        )
        return self.out(mixed.transpose(1, 2).reshape(batch, length, d_model))


# --8<-- [end:multihead]


# --8<-- [start:positions]
import math

import torch


def sinusoidal_positions(length, d_model):
    """The original transformer's position codes: length x d_model, sines and
    cosines of wavelengths from 2 pi up to almost 10000 x 2 pi."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32)
        * (-math.log(10000.0) / d_model)
    )
    codes = torch.zeros(length, d_model)
    codes[:, 0::2] = torch.sin(position * frequency)
    # an odd d_model has one cosine fewer than sines
    codes[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]
    return codes


# --8<-- [end:positions]


# --8<-- [start:block]
from torch import nn


class TransformerBlock(nn.Module):
    """A pre-norm transformer block: x + attention(norm(x)), then the same
    with an MLP."""

    def __init__(self, d_model, heads, hidden, dropout=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = MultiHeadAttention(d_model, heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None, is_causal=False):
        x = x + self.dropout(self.attention(self.norm1(x), mask, is_causal))
        return x + self.dropout(self.mlp(self.norm2(x)))


# --8<-- [end:block]


# --8<-- [start:row-lstm]
import torch
from torch import nn


class RowLSTM(nn.Module):
    """MNIST as a sequence: an LSTM reads an image row by row (28 steps of 28
    pixels) and classifies it from its last hidden state."""

    def __init__(self, hidden=128, layers=1):
        super().__init__()
        self.lstm = nn.LSTM(28, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, images):  # N x 784 (or N x 1 x 28 x 28), normalised
        rows = images.reshape(len(images), 28, 28)  # batch x time x features
        _, (hidden, _) = self.lstm(rows)
        return self.head(hidden[-1])  # the last layer's state after row 28


# --8<-- [end:row-lstm]


# --8<-- [start:patch-transformer]
import torch
from torch import nn


class PatchTransformer(nn.Module):
    """A small vision transformer for MNIST: 16 patches of 7 x 7 pixels become
    16 tokens, plus a class token whose final state is classified."""

    def __init__(self, d_model=64, heads=4, depth=4, hidden=128, dropout=0.1):
        super().__init__()
        self.embed = nn.Linear(7 * 7, d_model)
        self.class_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.positions = nn.Parameter(torch.randn(1, 17, d_model) * 0.02)  # learned
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, heads, hidden, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 10)

    def forward(self, images):  # N x 784 (or N x 1 x 28 x 28), normalised
        n = len(images)
        grid = images.reshape(n, 4, 7, 4, 7)  # rows of patches, patch rows, ...
        patches = grid.permute(0, 1, 3, 2, 4).reshape(n, 16, 49)
        tokens = torch.cat(
            [self.class_token.expand(n, -1, -1), self.embed(patches)], 1
        )
        x = tokens + self.positions
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


# --8<-- [end:patch-transformer]


# --8<-- [start:time-series]
import torch
from torch import nn


def noisy_oscillation(steps, seed=0, noise=0.5):
    """A sensor's readings around 20: an AR(2) process, x_t = 1.5 x_(t-1) -
    0.75 x_(t-2) + noise, a wave of period 12 steps that the noise keeps
    pushing. The best possible one-step forecast misses by the noise alone:
    its root mean square error is ``noise``."""
    generator = torch.Generator().manual_seed(seed)
    shocks = torch.randn(steps + 100, generator=generator) * noise
    x = torch.zeros(steps + 100)
    for t in range(2, steps + 100):
        x[t] = 1.5 * x[t - 1] - 0.75 * x[t - 2] + shocks[t]
    return 20 + x[100:]  # the first 100 steps: the start-up, dropped


def windows(series, length):
    """Every run of ``length`` readings (the inputs) and the reading after it
    (the target): N x length x 1 and N."""
    runs = series.unfold(0, length + 1, 1)  # N x (length + 1), overlapping
    return runs[:, :-1, None], runs[:, -1]


class Forecaster(nn.Module):
    """A GRU reads a window of readings; a linear layer predicts the next."""

    def __init__(self, hidden=32):
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):  # batch x length x 1
        out, _ = self.gru(x)
        return self.head(out[:, -1]).squeeze(-1)


# --8<-- [end:time-series]


# --8<-- [start:text]
from pathlib import Path

import torch


def read_pages(folder):
    """The text of every Markdown page in ``folder``, in name order."""
    pages = sorted(Path(folder).glob("*.md"))
    if not pages:
        raise FileNotFoundError(f"no .md files in {folder}")
    return "\n".join(page.read_text(encoding="utf-8") for page in pages)


class Vocabulary:
    """Characters <-> token ids, from the training text only. Id 0 is <unk>:
    any character the training text did not have."""

    UNKNOWN = "<unk>"

    def __init__(self, text):
        self.characters = [self.UNKNOWN, *sorted(set(text))]
        self.ids = {c: i for i, c in enumerate(self.characters)}

    def __len__(self):
        return len(self.characters)

    def encode(self, text):
        ids = [self.ids.get(c, 0) for c in text]  # unknown: 0
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids):
        return "".join(self.characters[i] for i in ids.tolist())


def unigram_bits(train_ids, val_ids, vocabulary_size):
    """Bits per character of the baseline that ignores context: each character
    predicted by its frequency in the training text (add-one smoothed)."""
    counts = torch.bincount(train_ids, minlength=vocabulary_size) + 1.0
    log2_p = torch.log2(counts / counts.sum())
    return -log2_p[val_ids].mean().item()


def bigram_bits(train_ids, val_ids, vocabulary_size):
    """Bits per character of the baseline that reads one character back: each
    predicted by how often it followed the previous one in training (add-one)."""
    counts = torch.ones(vocabulary_size, vocabulary_size)
    pairs = torch.ones(len(train_ids) - 1)
    counts.index_put_((train_ids[:-1], train_ids[1:]), pairs, accumulate=True)
    log2_p = torch.log2(counts / counts.sum(dim=1, keepdim=True))
    return -log2_p[val_ids[:-1], val_ids[1:]].mean().item()


# --8<-- [end:text]


# --8<-- [start:char-model]
import torch
import torch.nn.functional as F
from torch import nn


class CharTransformer(nn.Module):
    """A causal transformer over characters: each position predicts the next
    character from the ``context`` characters up to it."""

    def __init__(self, vocabulary_size, context=128, d_model=128, heads=4, depth=4):
        super().__init__()
        self.vocabulary_size, self.context = vocabulary_size, context
        self.embed = nn.Embedding(vocabulary_size, d_model)
        self.positions = nn.Parameter(torch.zeros(context, d_model))  # learned
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, heads, 4 * d_model) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocabulary_size, bias=False)
        self.apply(self.init_weights)
        nn.init.normal_(self.positions, std=0.02)
        self.head.weight = self.embed.weight  # tied: one table to read and write

    @staticmethod
    def init_weights(module):
        """One scale for every table and matrix: normal, standard deviation 0.02
        (nn.Embedding alone would start at 1, 50 times the positions)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids):  # batch x time, token ids
        length = ids.shape[-1]
        if length > self.context:  # a shape: known without reading the ids
            raise ValueError(
                f"a sequence of {length} tokens: this model reads at most "
                f"{self.context} (keep the last {self.context})"
            )
        x = self.embed(ids) + self.positions[:length]
        for block in self.blocks:
            x = block(x, is_causal=True)  # position i sees 0..i
        return self.head(self.norm(x))  # batch x time x vocabulary


def next_character_loss(model, ids):
    """Cross-entropy of predicting ids[:, 1:] from ids[:, :-1], in nats."""
    logits = model(ids[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())


def check_token_ids(ids, vocabulary_size):
    """Refuse ids outside the vocabulary, where the ids come in (once, not at
    every forward: reading them back from a GPU is a synchronisation)."""
    if len(ids) and (ids.min() < 0 or ids.max() >= vocabulary_size):
        raise ValueError(
            f"token ids from {ids.min().item()} to {ids.max().item()}: the "
            f"vocabulary has ids 0 to {vocabulary_size - 1}"
        )
    return ids


# --8<-- [end:char-model]


# --8<-- [start:lm-training]
import math

import torch
import torch.nn.functional as F
from torch import nn


def parameter_groups(model, weight_decay):
    """AdamW groups: weight decay on the matrices of linear layers only, not
    on biases, norms, embeddings or positions (a tied head is the embedding)."""
    matrices = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    matrices -= {
        id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)
    }
    decay, rest = [], []
    for parameter in model.parameters():  # a tied tensor appears once
        (decay if id(parameter) in matrices else rest).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]


def warmup_cosine(optimizer, warmup, steps):
    """The learning rate rises linearly for ``warmup`` steps, then follows a
    cosine down to a tenth of its peak at ``steps``."""

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(steps - warmup, 1), 1.0)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_language_model(
    model, train_ids, steps, batch_size, max_lr, weight_decay=0.1, clip=1.0, seed=0
):
    """AdamW on random windows of the training ids: decay on the weight
    matrices only, a tenth of the steps of warm-up then cosine, gradients
    clipped to norm ``clip``. Returns the loss of every step, in nats."""
    generator = torch.Generator().manual_seed(seed)
    groups = parameter_groups(model, weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=max_lr, betas=(0.9, 0.95))
    scheduler = warmup_cosine(optimizer, max(steps // 10, 1), steps)
    window = model.context + 1  # the inputs and, shifted by one, the targets
    losses = []
    model.train()
    for _ in range(steps):
        starts = torch.randint(
            len(train_ids) - window + 1, (batch_size,), generator=generator
        )
        batch = torch.stack([train_ids[i : i + window] for i in starts])
        loss = next_character_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        scheduler.step()
        losses.append(loss.detach())  # no .item(): no wait at every step
    return torch.stack(losses).tolist()


@torch.no_grad()
def bits_per_character(model, ids, stride=None, batch_size=64):
    """Bits per character of ``ids``, each character predicted once, through a
    sliding window: after the first window every prediction sees at least
    context - stride characters before it (stride: half the context)."""
    context = model.context
    stride = max(context // 2, 1) if stride is None else stride
    if not 0 < stride <= context:
        raise ValueError(f"stride {stride}: use 1 to the context, {context}")
    if len(ids) < 2:
        raise ValueError(f"{len(ids)} ids: a prediction needs at least 2")
    last = max(len(ids) - 1 - context, 0)  # where the last window starts
    starts = [*range(0, last, stride), last]
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=ids.device)
    scored_until = 0  # targets 1 .. scored_until are counted
    for first in range(0, len(starts), batch_size):
        chosen = starts[first : first + batch_size]
        batch = torch.stack([ids[s : s + context + 1] for s in chosen])
        logits = model(batch[:, :-1])
        nats = F.cross_entropy(
            logits.transpose(1, 2), batch[:, 1:], reduction="none"
        )
        for start, row in zip(chosen, nats):
            total += row[scored_until - start :].sum(dtype=torch.float64)
            scored_until = start + len(row)
    model.train(was_training)
    return total.item() / (len(ids) - 1) / math.log(2)  # one host sync


@torch.no_grad()
def sample(
    model,
    prompt_ids,
    length,
    temperature=1.0,
    top_k=None,
    top_p=None,
    generator=None,
    unknown_id=0,
):
    """``length`` new ids after ``prompt_ids``, each drawn from the model's
    distribution sharpened (temperature < 1) or flattened (> 1), from its
    ``top_k`` likeliest ids and the likeliest whose probabilities add up to
    ``top_p``, never ``unknown_id`` (Vocabulary's <unk>: no character; None
    allows every id); in eval mode, the model's mode restored after."""
    if temperature <= 0:
        raise ValueError(f"temperature {temperature}: use a positive number")
    if top_k is not None and not 1 <= top_k <= model.vocabulary_size:
        raise ValueError(f"top_k {top_k}: use 1 to {model.vocabulary_size}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p {top_p}: use a probability above 0, at most 1")
    check_token_ids(prompt_ids, model.vocabulary_size)
    was_training = model.training
    model.eval()
    ids = prompt_ids.clone()
    for _ in range(length):  # the whole context again for every new id
        logits = model(ids[None, -model.context :])[0, -1] / temperature
        if unknown_id is not None:  # <unk> stands for no character
            logits[unknown_id] = -math.inf
        # masks, not logits[mask] = ...: no host sync per id on a GPU
        if top_k is not None:  # keep the k largest
            kth = logits.topk(top_k).values[-1]
            logits = logits.masked_fill(logits < kth, -math.inf)
        if top_p is not None:  # keep the fewest whose probabilities reach top_p
            ordered, order = logits.sort(descending=True)
            p = ordered.softmax(dim=-1)
            before = p.cumsum(dim=-1) - p  # the likelier ids' total
            dropped = before >= top_p  # in sorted order; scattered back:
            dropped = torch.zeros_like(dropped).scatter(0, order, dropped)
            logits = logits.masked_fill(dropped, -math.inf)
        probabilities = logits.softmax(dim=-1)
        ids = torch.cat(
            [ids, torch.multinomial(probabilities, 1, generator=generator)]
        )
    model.train(was_training)
    return ids[len(prompt_ids) :]


# --8<-- [end:lm-training]


# What the page runs, in page order, at module level as on the page:
# `python -m snippets.sequences` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:tensors-demo]
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

    sentences = [
        torch.tensor([5, 2, 9, 4]),
        torch.tensor([7, 1]),
        torch.tensor([3, 8, 6]),
    ]
    lengths = torch.tensor([len(s) for s in sentences])
    padded = pad_sequence(sentences, batch_first=True, padding_value=0)
    mask = torch.arange(padded.shape[1]) < lengths[:, None]  # True: a real token
    print(padded)
    print(mask)

    torch.manual_seed(0)
    embedding = nn.Embedding(10, 4, padding_idx=0)  # id 0 -> a zero vector
    x = embedding(padded)
    print("batch x time x features:", tuple(x.shape))
    packed = pack_padded_sequence(
        x, lengths, batch_first=True, enforce_sorted=False
    )
    print("sequences still running at each step:", packed.batch_sizes.tolist())
    print(f"steps computed: {len(packed.data)} of {padded.numel()}")
    # --8<-- [end:tensors-demo]

    # --8<-- [start:shapes]
    rnn = nn.RNN(input_size=4, hidden_size=6, batch_first=True)
    lstm = nn.LSTM(4, 6, num_layers=2, batch_first=True, bidirectional=True)
    gru = nn.GRU(4, 6, batch_first=True)

    out, h = rnn(x)
    print("RNN  out", tuple(out.shape), " h", tuple(h.shape))
    out, (h, c) = lstm(x)
    print("LSTM out", tuple(out.shape), "h", tuple(h.shape), "c", tuple(c.shape))
    out, h = gru(x)
    print("GRU  out", tuple(out.shape), " h", tuple(h.shape))
    # --8<-- [end:shapes]

    # --8<-- [start:packed]
    packed_out, h = rnn(packed)
    out, _ = rnn(x)  # the padded batch: padding steps are computed too
    last = out[torch.arange(3), lengths - 1]  # the output at each real last step
    print(
        "packed: h is each sequence's state at its last token:",
        torch.allclose(h[0], last),
    )
    print(
        "padded: out[:, -1] is:",
        torch.allclose(out[:, -1], last),
        "(it read the padding too)",
    )
    # --8<-- [end:packed]

    # --8<-- [start:by-hand]
    def rnn_by_hand(rnn, x):
        """h_t = tanh(x_t W_ih^T + b_ih + h_(t-1) W_hh^T + b_hh), from h_0 = 0."""
        h = torch.zeros(x.shape[0], rnn.hidden_size)
        outputs = []
        for t in range(x.shape[1]):  # one time step after the other
            h = torch.tanh(
                x[:, t] @ rnn.weight_ih_l0.T
                + rnn.bias_ih_l0
                + h @ rnn.weight_hh_l0.T
                + rnn.bias_hh_l0
            )
            outputs.append(h)
        return torch.stack(outputs, dim=1)

    ours = rnn_by_hand(rnn, x)
    print("equal to nn.RNN:", torch.allclose(ours, rnn(x)[0], atol=1e-6))
    # --8<-- [end:by-hand]

    # --8<-- [start:vanishing]
    import matplotlib.pyplot as plt

    def gradient_per_step(layer, steps=100, seed=0):
        """|d loss / d x_t| for each step t, the loss read at the last step."""
        torch.manual_seed(seed)
        inputs = torch.randn(16, steps, 8, requires_grad=True)
        out, _ = layer(inputs)
        out[:, -1].sum().backward()
        return inputs.grad.norm(dim=(0, 2))

    def open_forget_gates(lstm, bias=3.0):
        """Start the forget gates near 1 (sigmoid(3) = 0.95): the cell keeps."""
        with torch.no_grad():  # the gates' biases: input, forget, cell, output
            lstm.bias_hh_l0[lstm.hidden_size : 2 * lstm.hidden_size] = bias
            lstm.bias_ih_l0[lstm.hidden_size : 2 * lstm.hidden_size] = 0.0
        return lstm

    torch.manual_seed(0)
    curves = {
        "RNN (tanh)": gradient_per_step(nn.RNN(8, 32, batch_first=True)),
        "LSTM": gradient_per_step(nn.LSTM(8, 32, batch_first=True)),
        "LSTM, forget bias 3": gradient_per_step(
            open_forget_gates(nn.LSTM(8, 32, batch_first=True))
        ),
    }
    print(
        f"{'gradient at input step':22}"
        + "".join(f"{t:>8}" for t in (99, 90, 50, 0))
    )
    for name, grad in curves.items():
        print(f"{name:22}" + "".join(f"{grad[t]:8.0e}" for t in (99, 90, 50, 0)))

    fig, ax = plt.subplots(figsize=(6, 3))
    for name, grad in curves.items():
        ax.semilogy(grad.detach(), label=name)
    ax.set(
        title="How much each input step moves the last output",
        xlabel="input step",
        ylabel="gradient norm",
    )
    ax.legend()
    # --8<-- [end:vanishing]

    # --8<-- [start:rnn-practice]
    out, (h, c) = lstm(x)  # 2 layers, bidirectional, batch_first: from above
    states = h.view(2, 2, 3, 6)  # layer x direction x batch x hidden
    print(
        "h",
        tuple(h.shape),
        "is layers x directions, batch, hidden:",
        tuple(states.shape),
    )
    print(
        "last layer forward = out[:, -1, :6]:",
        torch.allclose(states[1, 0], out[:, -1, :6]),
    )
    print(
        "last layer backward = out[:, 0, 6:]:",
        torch.allclose(states[1, 1], out[:, 0, 6:]),
    )

    torch.manual_seed(0)
    rnn = nn.RNN(8, 32, batch_first=True)
    out, _ = rnn(torch.randn(16, 50, 8))
    out[:, -1].pow(2).sum().backward()
    before = nn.utils.clip_grad_norm_(rnn.parameters(), max_norm=1.0)
    after = torch.cat([p.grad.flatten() for p in rnn.parameters()]).norm()
    print(f"gradient norm above 1: {before.item() > 1}; clipped to {after:.2f}")

    class StatefulRNN(nn.Module):
        """An RNN language model that carries its state from batch to batch."""

        def __init__(self, vocabulary_size, hidden=32):
            super().__init__()
            self.embed = nn.Embedding(vocabulary_size, hidden)
            self.gru = nn.GRU(hidden, hidden, batch_first=True)
            self.head = nn.Linear(hidden, vocabulary_size)

        def forward(self, ids, state=None):
            out, state = self.gru(self.embed(ids), state)
            return self.head(out), state

    torch.manual_seed(0)
    pattern = torch.randint(0, 2, (50,))  # 50 random bits, repeated forever
    phases = torch.tensor([[0], [13], [26], [39]])  # 4 sequences, out of step
    stream = pattern[(torch.arange(2001) + phases) % 50]  # 4 x 2001

    def train_in_chunks(carry, chunk=20):
        """Read the stream in order, chunk by chunk, one step each; carry: pass
        each chunk's final state to the next. The mean loss of the last 10."""
        torch.manual_seed(0)
        model = StatefulRNN(2)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
        state, losses = None, []
        for start in range(0, 2000, chunk):
            inputs = stream[:, start : start + chunk]
            targets = stream[:, start + 1 : start + chunk + 1]
            logits, state = model(inputs, state if carry else None)
            state = state.detach()  # keep the values, cut the graph
            loss = nn.functional.cross_entropy(logits.transpose(1, 2), targets)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
            losses.append(loss.item())
        return sum(losses[-10:]) / 10, model, state

    for carry in (False, True):
        loss, rnn_lm, state = train_in_chunks(carry)
        how = "carried" if carry else "reset at every chunk"
        print(f"state {how}: loss {loss:.2f} over the last 10 chunks")

    logits, kept = rnn_lm(stream[:, :20])  # without the detach:
    logits, kept = rnn_lm(stream[:, 20:40], kept)  # chunk 1, from chunk 0's
    logits.sum().backward()  # back through chunks 1 and 0, then freed
    try:
        rnn_lm(stream[:, 40:60], kept)[0].sum().backward()  # through them again
    except RuntimeError as error:
        print("RuntimeError:", str(error).split(" (")[0])
    # --8<-- [end:rnn-practice]

    # --8<-- [start:attention-demo]
    import torch.nn.functional as F

    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 5, 8).unbind(0)  # batch 2, 5 tokens, 8 features
    print(
        "equal to F.scaled_dot_product_attention:",
        torch.allclose(
            attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-6
        ),
    )

    causal = torch.ones(5, 5, dtype=torch.bool).tril()  # token i sees 0..i
    print(causal.int())
    print(
        "causal, equal to is_causal=True:",
        torch.allclose(
            attention(q, k, v, causal[None]),  # 1 x queries x keys: every sequence
            F.scaled_dot_product_attention(q, k, v, is_causal=True),
            atol=1e-6,
        ),
    )
    # --8<-- [end:attention-demo]

    # --8<-- [start:padding-mask]
    lengths = torch.tensor([5, 3])  # the second sequence has 2 padding tokens
    keys_present = torch.arange(5) < lengths[:, None]  # batch x keys
    padding_mask = keys_present[:, None, :]  # batch x 1 x keys: every query
    out = attention(q, k, v, padding_mask)
    v_changed = v.clone()
    v_changed[1, 3:] = 1000.0  # whatever sits in the padding...
    print(
        "padding ignored:",
        torch.equal(out, attention(q, k, v_changed, padding_mask)),
    )
    weights = (q @ k.transpose(-2, -1) / 8**0.5).masked_fill(
        ~padding_mask, -torch.inf
    )
    print(
        "weights of query 0, sequence 2:",
        weights.softmax(-1)[1, 0].numpy().round(2),
    )
    # --8<-- [end:padding-mask]

    # --8<-- [start:fully-masked]
    present = torch.tensor([[False, False, True, True, True], [True] * 5])
    both = causal & present[:, None, :]  # left padding, and causal
    print(both[0].int())  # queries 0 and 1 of the first sequence see no key
    ours = attention(q, k, v, both)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=both)
    print("no NaN:", not ours.isnan().any().item())
    print(
        "equal to F.scaled_dot_product_attention:",
        torch.allclose(ours, sdpa, atol=1e-6),
    )
    print("rows of zeros:", ours[0, :2].abs().max().item() == 0)
    real = present[..., None]  # batch x time x 1: pool real positions only
    pooled = (ours * real).sum(dim=1) / real.sum(dim=1)
    print("mean over real positions:", tuple(pooled.shape))
    # --8<-- [end:fully-masked]

    # --8<-- [start:multihead-demo]
    torch.manual_seed(0)
    ours = MultiHeadAttention(d_model=8, heads=2)
    theirs = nn.MultiheadAttention(embed_dim=8, num_heads=2, batch_first=True)
    with torch.no_grad():  # the same weights in both
        theirs.in_proj_weight.copy_(ours.qkv.weight)
        theirs.in_proj_bias.copy_(ours.qkv.bias)
        theirs.out_proj.weight.copy_(ours.out.weight)
        theirs.out_proj.bias.copy_(ours.out.bias)

    x = torch.randn(2, 5, 8)
    expected, _ = theirs(  # need_weights=False: the fused attention, no weights
        x,
        x,
        x,
        key_padding_mask=~keys_present,  # True: ignore this key!
        need_weights=False,
    )
    print(
        "equal to nn.MultiheadAttention:",
        torch.allclose(ours(x, padding_mask[:, None]), expected, atol=1e-6),
    )
    # --8<-- [end:multihead-demo]

    # --8<-- [start:positions-demo]
    order = torch.tensor([4, 2, 0, 1, 3])  # the same tokens, shuffled
    with torch.no_grad():
        plain = ours(x)
        print(
            "no positions, output shuffled alike:",
            torch.allclose(ours(x[:, order]), plain[:, order], atol=1e-6),
        )
        codes = sinusoidal_positions(5, 8)
        placed = ours(x + codes)
        print(
            "with positions:",
            torch.allclose(ours(x[:, order] + codes), placed[:, order], atol=1e-6),
        )
    # --8<-- [end:positions-demo]

    # --8<-- [start:block-demo]
    torch.manual_seed(0)
    block = TransformerBlock(d_model=8, heads=2, hidden=32).eval()
    layer = nn.TransformerEncoderLayer(
        8,
        2,
        dim_feedforward=32,
        dropout=0.0,
        activation="gelu",
        batch_first=True,
        norm_first=True,  # pre-norm, as ours
    ).eval()
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(block.attention.qkv.weight)
        layer.self_attn.in_proj_bias.copy_(block.attention.qkv.bias)
        layer.self_attn.out_proj.load_state_dict(block.attention.out.state_dict())
        layer.linear1.load_state_dict(block.mlp[0].state_dict())
        layer.linear2.load_state_dict(block.mlp[2].state_dict())
        layer.norm1.load_state_dict(block.norm1.state_dict())
        layer.norm2.load_state_dict(block.norm2.state_dict())
        same = torch.allclose(block(x), layer(x), atol=1e-5)
    print("equal to nn.TransformerEncoderLayer(norm_first=True):", same)
    print("parameters:", sum(p.numel() for p in block.parameters()))
    # --8<-- [end:block-demo]

    # --8<-- [start:models-demo]
    torch.manual_seed(0)
    images = torch.randn(4, 784)  # four MNIST-shaped inputs
    for model in (RowLSTM(), PatchTransformer()):
        count = sum(p.numel() for p in model.parameters())
        print(
            f"{type(model).__name__:16} {count:7,} parameters,",
            "logits",
            tuple(model(images).shape),
        )
    # --8<-- [end:models-demo]

    # --8<-- [start:time-series-demo]
    series = noisy_oscillation(2000)
    train_end, val_end = 1200, 1600  # in time order: the past, then the future
    mean, std = series[:train_end].mean(), series[:train_end].std()  # training only
    scaled = (series - mean) / std
    parts = {
        "train": windows(scaled[:train_end], 16),
        "validation": windows(scaled[train_end:val_end], 16),
        "test": windows(scaled[val_end:], 16),
    }
    print({name: tuple(x.shape) for name, (x, _) in parts.items()})

    torch.manual_seed(0)
    forecaster = Forecaster(hidden=16)
    optimizer = torch.optim.Adam(forecaster.parameters(), lr=1e-2)
    inputs, targets = parts["train"]
    for _ in range(60):  # full batches of 1,184 windows
        loss = nn.functional.mse_loss(forecaster(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def rmse(predicted, target):  # root mean square error, in the sensor's units
        return ((predicted - target) * std).pow(2).mean().sqrt().item()

    def the_rule(x):  # the forecast of the rule that made the series
        last, before = (x[:, i, 0] * std + mean - 20 for i in (-1, -2))
        return (20 + 1.5 * last - 0.75 * before - mean) / std

    with torch.no_grad():
        for name in ("validation", "test"):  # test: once, at the end
            x, y = parts[name]
            errors = [rmse(f, y) for f in (forecaster(x), x[:, -1, 0], the_rule(x))]
            print(
                f"{name:10} GRU {errors[0]:.2f}, last value {errors[1]:.2f}, "
                f"the rule itself {errors[2]:.2f}"
            )
    # --8<-- [end:time-series-demo]

    # --8<-- [start:text-demo]
    text = "\n".join(
        ["# Tensors", "A tensor is an n-dimensional array.", "torch.zeros(2, 3)"]
        * 50
    )
    split = int(0.9 * len(text))
    vocabulary = Vocabulary(text[:split])  # from the training part only
    train_ids, val_ids = (
        vocabulary.encode(text[:split]),
        vocabulary.encode(text[split:]),
    )
    print(
        len(vocabulary), "ids: <unk> and", repr("".join(vocabulary.characters[1:]))
    )
    print(
        "unseen characters become <unk>:",
        vocabulary.decode(vocabulary.encode("Ωa")),
    )
    V = len(vocabulary)
    unigram, bigram = (
        unigram_bits(train_ids, val_ids, V),
        bigram_bits(train_ids, val_ids, V),
    )
    print(
        f"baselines: unigram {unigram:.2f}, bigram {bigram:.2f} bits per character"
    )
    torch.manual_seed(0)
    model = CharTransformer(V, context=32, d_model=32, heads=2, depth=2)
    batch = train_ids[: 4 * 33].reshape(4, 33)
    untrained = next_character_loss(model, batch).item() / math.log(2)
    print(f"untrained: {untrained:.1f} bits (log2 of {V} = {math.log2(V):.1f})")
    # --8<-- [end:text-demo]

    # --8<-- [start:lm-training-demo]
    print(
        "head and embedding, one tensor:", model.head.weight is model.embed.weight
    )
    decay, rest = parameter_groups(model, weight_decay=0.1)
    counts = len(decay["params"]), len(rest["params"])
    print("weight decay on {} matrices, not on {} other tensors".format(*counts))
    losses = train_language_model(
        model, train_ids, steps=80, batch_size=16, max_lr=3e-3
    )
    first, last = (loss / math.log(2) for loss in (losses[0], losses[-1]))
    print(f"training loss: {first:.2f} -> {last:.2f} bits per character")
    bits = bits_per_character(model, val_ids)
    print(f"validation: {bits:.2f} bits per character, perplexity {2**bits:.2f}")
    prompt = vocabulary.encode("A ten")
    for settings in ({"top_k": 3}, {"top_p": 0.9}):
        ids = sample(
            model,
            prompt,
            40,
            0.8,
            **settings,
            generator=torch.Generator().manual_seed(0),
        )
        print(settings, repr(vocabulary.decode(ids)))
    # --8<-- [end:lm-training-demo]

    # --8<-- [start:errors]
    import textwrap

    for bad in (
        lambda: model(train_ids[:40][None]),  # longer than the context
        lambda: check_token_ids(torch.tensor([1, 2, 99]), len(vocabulary)),
        lambda: attention(q, k, v, keys_present),  # batch x keys: no query axis
        lambda: attention(q, k, v, torch.ones(5, 4, dtype=torch.bool)),
    ):
        try:
            bad()
        except (ValueError, TypeError) as error:
            print(textwrap.fill(f"{type(error).__name__}: {error}", 84))
    # --8<-- [end:errors]

    # --8<-- [start:exercise-gru]
    torch.manual_seed(0)
    grad = gradient_per_step(nn.GRU(8, 32, batch_first=True))
    print(f"GRU: the gradient at step 0 is {grad[0] / grad[99]:.0e} of step 99's")
    gru = nn.GRU(8, 32, batch_first=True)
    with torch.no_grad():  # gates r, z, n: z near 1 keeps the old state
        gru.bias_hh_l0[32:64] = 3.0
    grad = gradient_per_step(gru)
    print(f"update-gate bias 3: {grad[0] / grad[99]:.0e} of it")
    # --8<-- [end:exercise-gru]

    # --8<-- [start:exercise-weights]
    torch.manual_seed(0)
    q, k = torch.randn(2, 1, 6, 64).unbind(0)
    for scale in (1.0, 1 / 8):  # without and with 1 / sqrt(64)
        weights = (q @ k.transpose(-2, -1) * scale).softmax(-1)
        print(
            f"scale {scale:5.3f}: largest weight per query",
            weights.amax(-1).numpy().round(2),
        )
    # --8<-- [end:exercise-weights]
