"""Sequences and attention: the code of docs/sequences.md.

Sequences as tensors (padding, masks, packing), recurrent layers (RNN, LSTM,
GRU; one RNN step by hand; vanishing gradients), attention from scratch (scaled
dot-product, masks, multi-head, positions, a transformer block), and the models
of the chapter's two projects: MNIST read as sequences (an LSTM over rows, a
transformer over patches) and a character-level language model trained on the
guide's own pages. benchmarks/sequences.py trains and records them. Definitions
are at module level; what the page runs is at the end, at module level.
"""

# --8<-- [start:attention]
import math

import torch


def attention(q, k, v, mask=None):
    """Scaled dot-product attention: softmax(q k^T / sqrt(d)) v.

    q: ... x queries x d, k and v: ... x keys x d. mask (bool, optional): True
    where a query may look at a key, shaped queries x keys or broadcastable to
    ... x queries x keys."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask of dtype {mask.dtype}: use True/False values")
        try:
            torch.broadcast_shapes(mask.shape, scores.shape)
        except RuntimeError:
            raise ValueError(
                f"mask {tuple(mask.shape)} does not fit scores "
                f"{tuple(scores.shape)} (... x queries x keys)"
            ) from None
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


# --8<-- [end:attention]


# --8<-- [start:multihead]
import torch
from torch import nn


class MultiHeadAttention(nn.Module):
    """Self-attention with ``heads`` heads of size d_model / heads each."""

    def __init__(self, d_model, heads):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)  # the three projections at once
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x, mask=None):
        batch, length, d_model = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        # batch x length x d_model -> batch x heads x length x head size
        q, k, v = (
            t.reshape(batch, length, self.heads, -1).transpose(1, 2)
            for t in (q, k, v)
        )
        mixed = attention(q, k, v, mask)  # each head attends on its own
        return self.out(mixed.transpose(1, 2).reshape(batch, length, d_model))


# --8<-- [end:multihead]


# --8<-- [start:positions]
import math

import torch


def sinusoidal_positions(length, d_model):
    """The original transformer's position codes: length x d_model, sines and
    cosines of wavelengths from 2 pi to 10000 x 2 pi."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32)
        * (-math.log(10000.0) / d_model)
    )
    codes = torch.zeros(length, d_model)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency)
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

    def forward(self, x, mask=None):
        x = x + self.dropout(self.attention(self.norm1(x), mask))
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
    """Characters <-> token ids; characters seen in training only."""

    def __init__(self, text):
        self.characters = sorted(set(text))
        self.ids = {c: i for i, c in enumerate(self.characters)}

    def __len__(self):
        return len(self.characters)

    def encode(self, text):
        unknown = sorted(set(text) - self.ids.keys())
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {unknown[:10]}")
        return torch.tensor([self.ids[c] for c in text])

    def decode(self, ids):
        return "".join(self.characters[i] for i in ids.tolist())


def unigram_bits(train_ids, val_ids, vocabulary_size):
    """Bits per character of the baseline that ignores context: each character
    predicted by its frequency in the training text (add-one smoothed)."""
    counts = torch.bincount(train_ids, minlength=vocabulary_size) + 1.0
    log2_p = torch.log2(counts / counts.sum())
    return -log2_p[val_ids].mean().item()


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
        self.positions = nn.Parameter(torch.randn(context, d_model) * 0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, heads, 4 * d_model) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocabulary_size)
        causal = torch.ones(context, context, dtype=torch.bool).tril()
        self.register_buffer("causal", causal, persistent=False)

    def forward(self, ids):  # batch x time, token ids
        length = ids.shape[-1]
        if length > self.context:
            raise ValueError(
                f"a sequence of {length} tokens: this model reads at most "
                f"{self.context} (keep the last {self.context})"
            )
        if ids.min() < 0 or ids.max() >= self.vocabulary_size:
            raise ValueError(
                f"token ids from {ids.min().item()} to {ids.max().item()}: the "
                f"vocabulary has ids 0 to {self.vocabulary_size - 1}"
            )
        x = self.embed(ids) + self.positions[:length]
        mask = self.causal[:length, :length]  # position i sees 0..i
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))  # batch x time x vocabulary


def next_character_loss(model, ids):
    """Cross-entropy of predicting ids[:, 1:] from ids[:, :-1], in nats."""
    logits = model(ids[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())


@torch.no_grad()
def sample(model, prompt_ids, length, temperature=1.0, generator=None):
    """``length`` new ids after ``prompt_ids``, each drawn from the model's
    distribution sharpened (temperature < 1) or flattened (> 1)."""
    if temperature <= 0:
        raise ValueError(f"temperature {temperature}: use a positive number")
    ids = prompt_ids.clone()
    for _ in range(length):
        logits = model(ids[None, -model.context :])[0, -1]
        probabilities = (logits / temperature).softmax(dim=-1)
        ids = torch.cat(
            [ids, torch.multinomial(probabilities, 1, generator=generator)]
        )
    return ids[len(prompt_ids) :]


# --8<-- [end:char-model]


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
            attention(q, k, v, causal),
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
    expected, _ = theirs(x, x, x, key_padding_mask=~keys_present)  # True: ignore!
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

    # --8<-- [start:text-demo]
    text = "\n".join(
        ["# Tensors", "A tensor is an n-dimensional array.", "torch.zeros(2, 3)"]
        * 50
    )
    split = int(0.9 * len(text))
    vocabulary = Vocabulary(text[:split])
    train_ids, val_ids = (
        vocabulary.encode(text[:split]),
        vocabulary.encode(text[split:]),
    )
    print(len(vocabulary), "characters:", repr("".join(vocabulary.characters)))
    print(
        f"unigram baseline: {unigram_bits(train_ids, val_ids, len(vocabulary)):.2f}"
        " bits per character"
    )
    torch.manual_seed(0)
    model = CharTransformer(
        len(vocabulary), context=32, d_model=32, heads=2, depth=2
    )
    batch = train_ids[: 4 * 33].reshape(4, 33)
    print(
        f"untrained: {next_character_loss(model, batch).item() / math.log(2):.1f}"
        f" bits per character (log2 of {len(vocabulary)} = "
        f"{math.log2(len(vocabulary)):.1f})"
    )
    # --8<-- [end:text-demo]

    # --8<-- [start:errors]
    for bad in (
        lambda: model(train_ids[:40][None]),  # longer than the context
        lambda: model(torch.tensor([[1, 2, 99]])),  # not a token id
        lambda: attention(q, k, v, torch.ones(5, 4, dtype=torch.bool)),
        lambda: vocabulary.encode("Ω"),
    ):
        try:
            bad()
        except (ValueError, TypeError) as error:
            print(type(error).__name__ + ":", error)
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
