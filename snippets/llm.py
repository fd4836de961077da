"""A small language model, end to end: the code of docs/llm.md.

A byte-level BPE tokenizer written by hand (and Hugging Face's ``tokenizers``
beside it), the blocks of current language models (RMSNorm, rotary position
embeddings, SwiGLU, grouped-query attention on PyTorch's fused attention,
pre-norm blocks, weight tying), a corpus that every reader has (the Python
standard library's source, split by file), training and evaluation against a
bigram baseline, generation with a KV cache written by hand and sampling, and
LoRA adapters with a checkpoint of their own. benchmarks/llm.py trains and
records the model. Definitions are at module level; what the page runs is at
the end, at module level.
"""

# --8<-- [start:bpe]
import re
from collections import Counter, defaultdict

# Pieces BPE never merges across: a word with the space before it, a number,
# a run of punctuation, a run of spaces. Every character falls in one piece.
PIECES = re.compile(r" ?[^\W\d]\w*| ?\d+| ?[^\w\s]+|\s+(?!\S)|\s+")
END_OF_TEXT = "<|endoftext|>"


def pieces(text):
    """The text cut into pieces that join back to it exactly."""
    return PIECES.findall(text)


def utf8(text):
    """The text's UTF-8 bytes; a clear error for what UTF-8 cannot hold."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = text[error.start : error.end].encode("unicode_escape").decode()
        raise ValueError(
            f"character {bad} at position {error.start} has no UTF-8 bytes (a lone "
            "surrogate, e.g. from surrogateescape): fix the text's decoding"
        ) from None


class BytePairTokenizer:
    """Byte-level BPE: ids 0 to 255 are the bytes, each merge adds one id for
    a pair of ids, and the last id is the END_OF_TEXT special token."""

    def __init__(self, merges):
        self.merges = merges  # (left id, right id) -> new id, in training order
        self.vocabulary = {i: bytes([i]) for i in range(256)}
        for (left, right), new in merges.items():
            self.vocabulary[new] = self.vocabulary[left] + self.vocabulary[right]
        self.end_of_text = 256 + len(merges)
        self.encoded = {}  # piece -> ids: code repeats its pieces

    def __len__(self):
        return self.end_of_text + 1

    @classmethod
    def train(cls, text, vocabulary_size):
        """Merge the most frequent pair of ids within the pieces, again and
        again, until the vocabulary (bytes, merges, END_OF_TEXT) is full."""
        if vocabulary_size < 257:
            raise ValueError(
                f"vocabulary_size {vocabulary_size}: at least 257 (256 bytes and "
                "the END_OF_TEXT token)"
            )
        counts = Counter(pieces(text))
        words = [list(utf8(piece)) for piece in counts]
        frequency = list(counts.values())
        pairs, where = Counter(), defaultdict(set)  # pair -> count, -> words
        for index, word in enumerate(words):
            for pair in zip(word, word[1:]):
                pairs[pair] += frequency[index]
                where[pair].add(index)
        merges = {}
        for new in range(256, vocabulary_size - 1):
            if not pairs:
                break
            best = max(pairs, key=lambda p: (pairs[p], -p[0], -p[1]))
            merges[best] = new
            for index in where.pop(best):
                word = words[index]
                for pair in zip(word, word[1:]):  # the word's old pairs out
                    pairs[pair] -= frequency[index]
                    if pairs[pair] <= 0:
                        del pairs[pair]
                word = words[index] = merge_pair(word, best, new)
                for pair in zip(word, word[1:]):  # its new pairs in
                    pairs[pair] += frequency[index]
                    where[pair].add(index)
        return cls(merges)

    def encode_piece(self, piece):
        if piece not in self.encoded:
            ids = list(utf8(piece))
            while len(ids) > 1:  # apply the earliest-learned merge first
                pair = min(zip(ids, ids[1:]), key=lambda p: self.merges.get(p, 1e9))
                if pair not in self.merges:
                    break
                ids = merge_pair(ids, pair, self.merges[pair])
            self.encoded[piece] = ids
        return self.encoded[piece]

    def encode(self, text):
        """Token ids of ``text``; END_OF_TEXT written in the text stays text."""
        utf8(text)  # refuse what UTF-8 cannot hold, saying where
        return [i for piece in pieces(text) for i in self.encode_piece(piece)]

    def encode_documents(self, documents):
        """The documents' ids, each followed by the END_OF_TEXT id."""
        return [
            i for doc in documents for i in [*self.encode(doc), self.end_of_text]
        ]

    def decode(self, ids):
        """Text of ids; bytes that are not whole UTF-8 characters become U+FFFD
        (a model can emit half a character)."""
        unknown = [i for i in ids if not 0 <= i < len(self)]
        if unknown:
            raise ValueError(
                f"ids {unknown[:3]}: this tokenizer has 0 to {len(self) - 1}"
            )
        pieces_ = [
            END_OF_TEXT.encode() if i == self.end_of_text else self.vocabulary[i]
            for i in ids
        ]
        return b"".join(pieces_).decode("utf-8", errors="replace")


def merge_pair(ids, pair, new):
    """``ids`` with every occurrence of ``pair``, left to right, replaced."""
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            merged.append(new)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


# --8<-- [end:bpe]


# --8<-- [start:library-tokenizer]
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def train_library_tokenizer(text, vocabulary_size):
    """Hugging Face's byte-level BPE, trained on the same text with the same
    vocabulary size (its 256 byte symbols, merges, END_OF_TEXT)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocabulary_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[END_OF_TEXT],
        show_progress=False,
    )
    tokenizer.train_from_iterator([text], trainer)
    return tokenizer


# --8<-- [end:library-tokenizer]


# --8<-- [start:rmsnorm]
import torch
from torch import nn


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight: LayerNorm without the mean and the
    bias, over the last axis."""

    def __init__(self, size, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x):
        mean_square = x.pow(2).mean(dim=-1, keepdim=True)
        return x * torch.rsqrt(mean_square + self.eps) * self.weight


# --8<-- [end:rmsnorm]


# --8<-- [start:rope]
import torch


def rope_tables(length, head_dim, base=10000.0):
    """cos and sin of position x frequency: length x head_dim / 2 each."""
    frequency = base ** (-torch.arange(0, head_dim, 2).float() / head_dim)
    angle = torch.arange(length).float()[:, None] * frequency
    return angle.cos(), angle.sin()


def apply_rope(x, cos, sin):
    """Rotate each pair (x[i], x[i + half]) of x (... x positions x head_dim)
    by its position's angle; cos and sin: positions x head_dim / 2."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([first * cos - second * sin, first * sin + second * cos], -1)


# --8<-- [end:rope]


# --8<-- [start:attention]
import torch
import torch.nn.functional as F
from torch import nn


class SwiGLU(nn.Module):
    """The gated MLP of current models: down(silu(gate(x)) * up(x))."""

    def __init__(self, d_model, hidden):
        super().__init__()
        self.gate = nn.Linear(d_model, hidden, bias=False)
        self.up = nn.Linear(d_model, hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with ``heads`` query heads sharing ``kv_heads``
    key and value heads, rotary positions, and an optional KV cache."""

    def __init__(self, d_model, heads, kv_heads):
        super().__init__()
        if d_model % heads or heads % kv_heads:
            raise ValueError(
                f"d_model {d_model}, {heads} heads, {kv_heads} key/value heads: "
                "heads must divide d_model, and key/value heads the heads"
            )
        self.heads, self.kv_heads = heads, kv_heads
        self.head_dim = d_model // heads
        self.q = nn.Linear(d_model, heads * self.head_dim, bias=False)
        self.k = nn.Linear(d_model, kv_heads * self.head_dim, bias=False)
        self.v = nn.Linear(d_model, kv_heads * self.head_dim, bias=False)
        self.o = nn.Linear(heads * self.head_dim, d_model, bias=False)

    def forward(self, x, cos, sin, cache=None):
        batch, length, _ = x.shape

        def split(t, heads):  # batch x length x (heads x d) -> heads first
            return t.view(batch, length, heads, self.head_dim).transpose(1, 2)

        q = apply_rope(split(self.q(x), self.heads), cos, sin)
        k = apply_rope(split(self.k(x), self.kv_heads), cos, sin)
        v = split(self.v(x), self.kv_heads)
        if cache is not None:
            k, v = cache.update(k, v)  # every position so far
        keys = k.shape[-2]
        if length == keys:  # no earlier positions: the usual causal mask
            mixed = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, enable_gqa=True
            )
        else:  # new queries after cached keys: align the mask bottom right
            mask = torch.ones(length, keys, dtype=torch.bool, device=x.device)
            mixed = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask.tril(keys - length), enable_gqa=True
            )
        return self.o(mixed.transpose(1, 2).reshape(batch, length, -1))


# --8<-- [end:attention]


# --8<-- [start:model]
import torch
from torch import nn


class KVCache:
    """One layer's keys and values of the positions seen so far, in tensors
    allocated once for ``max_length`` positions."""

    def __init__(self, batch, kv_heads, max_length, head_dim, like=None):
        shape = (batch, kv_heads, max_length, head_dim)
        options = (
            {"dtype": like.dtype, "device": like.device} if like is not None else {}
        )
        self.keys = torch.zeros(shape, **options)  # like: the model's weights
        self.values = torch.zeros(shape, **options)
        self.length = 0

    def update(self, k, v):
        end = self.length + k.shape[-2]
        if end > self.keys.shape[-2]:
            raise ValueError(
                f"{end} positions: the cache holds {self.keys.shape[-2]}"
            )
        self.keys[:, :, self.length : end] = k
        self.values[:, :, self.length : end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


class Block(nn.Module):
    """A pre-norm block: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, d_model, heads, kv_heads, hidden):
        super().__init__()
        self.attention_norm = nn.RMSNorm(d_model, eps=1e-6)
        self.attention = GroupedQueryAttention(d_model, heads, kv_heads)
        self.mlp_norm = nn.RMSNorm(d_model, eps=1e-6)
        self.mlp = SwiGLU(d_model, hidden)

    def forward(self, x, cos, sin, cache=None):
        x = x + self.attention(self.attention_norm(x), cos, sin, cache)
        return x + self.mlp(self.mlp_norm(x))


class TinyLM(nn.Module):
    """A decoder-only language model: token embeddings, pre-norm blocks with
    rotary positions, a final RMSNorm and a head tied to the embeddings."""

    def __init__(self, vocabulary_size, context, d_model, heads, kv_heads, depth):
        super().__init__()
        self.context = context
        self.embed = nn.Embedding(vocabulary_size, d_model)
        hidden = 64 * max(1, round(8 * d_model / 3 / 64))  # about 8/3 d_model
        self.blocks = nn.ModuleList(
            Block(d_model, heads, kv_heads, hidden) for _ in range(depth)
        )
        self.norm = nn.RMSNorm(d_model, eps=1e-6)
        self.head = nn.Linear(d_model, vocabulary_size, bias=False)
        for module in self.modules():  # one small scale for every matrix
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
        self.head.weight = self.embed.weight  # tied: one table in and out
        cos, sin = rope_tables(context, d_model // heads)
        self.register_buffer("cos", cos, persistent=False)  # not weights
        self.register_buffer("sin", sin, persistent=False)

    def new_caches(self, batch=1):
        attention = self.blocks[0].attention
        shape = (batch, attention.kv_heads, self.context, attention.head_dim)
        return [KVCache(*shape, like=self.embed.weight) for _ in self.blocks]

    def forward(self, ids, caches=None):  # batch x length -> logits
        start = caches[0].length if caches else 0
        end = start + ids.shape[-1]
        if end > self.context:
            raise ValueError(
                f"positions {start} to {end - 1}: this model reads at most "
                f"{self.context} tokens (its context)"
            )
        cos, sin = self.cos[start:end], self.sin[start:end]
        x = self.embed(ids)
        for index, block in enumerate(self.blocks):
            x = block(x, cos, sin, caches[index] if caches else None)
        return self.head(self.norm(x))


def parameter_count(module):
    """Parameters of a module, a tied tensor counted once."""
    return sum(p.numel() for p in module.parameters())


# --8<-- [end:model]


# --8<-- [start:corpus]
import hashlib
import sysconfig
from pathlib import Path

SKIPPED_FOLDERS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}


def stdlib_files(root=None):
    """The standard library's .py files, without its tests and third-party
    packages, in name order."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    return sorted(
        path
        for path in root.rglob("*.py")
        if not SKIPPED_FOLDERS & set(path.relative_to(root).parts[:-1])
    )


def split_by_file(files, root=None):
    """train, validation and test lists of files: a file's part depends on its
    name alone (a hash), so a file never straddles two parts; about 1 file in
    20 goes to validation, and 1 to test."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    parts = {"train": [], "validation": [], "test": []}
    for path in files:
        name = path.relative_to(root).as_posix().encode()
        bucket = hashlib.sha256(name).digest()[0] % 20
        part = "test" if bucket == 0 else "validation" if bucket == 1 else "train"
        parts[part].append(path)
    return parts


def read_texts(files, max_characters=None):
    """The files' texts, in order, until ``max_characters`` are read."""
    texts, total = [], 0
    for path in files:
        if max_characters is not None and total >= max_characters:
            break
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
        total += len(texts[-1])
    return texts


# --8<-- [end:corpus]


# --8<-- [start:training]
import math

import torch
import torch.nn.functional as F


def bigram_loss(train_ids, eval_ids, vocabulary_size):
    """Cross-entropy (nats per token) of predicting each token from the one
    before by the training counts, add-one smoothed: the baseline."""
    counts = torch.ones(vocabulary_size, vocabulary_size)
    ones = torch.ones(len(train_ids) - 1)
    counts.index_put_((train_ids[:-1], train_ids[1:]), ones, accumulate=True)
    log_p = (counts / counts.sum(dim=1, keepdim=True)).log()
    return -log_p[eval_ids[:-1], eval_ids[1:]].mean().item()


def train(
    model, ids, steps, batch_size, lr, weight_decay=0.1, seed=0, after_step=None
):
    """AdamW on random windows of ``ids`` (only the parameters that require
    gradients), a tenth of the steps of warm-up then a cosine, gradients
    clipped to norm 1. The loss of every step, in nats per token;
    ``after_step(step)``, if given, is called after each step."""
    if len(ids) <= model.context:
        raise ValueError(
            f"{len(ids)} tokens: training needs more than the context, "
            f"{model.context}"
        )
    generator = torch.Generator().manual_seed(seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [  # weight decay on matrices, not on norms' weights
        {"params": [p for p in trainable if p.ndim >= 2]},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        groups, lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay
    )
    warmup = max(steps // 10, 1)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(steps - warmup, 1), 1.0)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))  # to a tenth

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    model.train()
    losses = []
    for _ in range(steps):
        starts = torch.randint(  # a window: context inputs and their next
            len(ids) - model.context, (batch_size,), generator=generator
        )
        windows = torch.stack([ids[s : s + model.context + 1] for s in starts])
        logits = model(windows[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if after_step is not None:
            after_step(len(losses))
    return losses


def evaluate(model, ids, batch_size=16):
    """Mean cross-entropy (nats per token) over consecutive windows of the
    context's length: each window's first tokens see little context."""
    if len(ids) <= model.context:
        raise ValueError(
            f"{len(ids)} tokens: evaluation needs more than the context, "
            f"{model.context}"
        )
    windows = ids[: (len(ids) - 1) // model.context * model.context + 1]
    inputs = windows[:-1].view(-1, model.context)
    targets = windows[1:].view(-1, model.context)
    was_training, total = model.training, 0.0
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            logits = model(inputs[i : i + batch_size])
            total += F.cross_entropy(
                logits.flatten(0, 1),
                targets[i : i + batch_size].flatten(),
                reduction="sum",
            ).item()
    model.train(was_training)
    return total / targets.numel()


# --8<-- [end:training]


# --8<-- [start:generation]
import torch


def check_sampling(temperature=None, top_k=None, top_p=None):
    """Refuse settings that would be ignored or make no distribution."""
    if temperature is None:
        if top_k is not None or top_p is not None:
            raise ValueError("top_k and top_p need a temperature (None: greedy)")
        return
    if not temperature > 0:
        raise ValueError(
            f"temperature {temperature}: use a value above 0 (None: greedy)"
        )
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k {top_k}: keep at least 1 token")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p {top_p}: use a value in (0, 1]")


def next_token(logits, temperature=None, top_k=None, top_p=None, generator=None):
    """One id from the last position's logits: the likeliest without a
    temperature (greedy), else drawn from softmax(logits / temperature) among
    the top_k likeliest (all tokens tied with the k-th stay in), or the
    fewest whose probabilities reach top_p."""
    check_sampling(temperature, top_k, top_p)
    if temperature is None:
        return logits.argmax(-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1])).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        probabilities, order = logits.softmax(-1).sort(descending=True)
        before = probabilities.cumsum(-1) - probabilities  # mass ahead of each
        dropped = (before >= top_p).scatter(-1, order, before >= top_p)
        logits = logits.masked_fill(dropped, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)


def generate(model, prompt, new_tokens, use_cache=True, **sampling):
    """``prompt`` (a list of ids) followed by ``new_tokens`` ids, in eval
    mode without autograd. With the cache each step reads one new token;
    without it, each step reads the whole sequence again."""
    check_sampling(**{k: v for k, v in sampling.items() if k != "generator"})
    if not prompt or new_tokens < 0:
        raise ValueError(
            f"a prompt of {len(prompt)} tokens and {new_tokens} new: need at "
            "least one token of prompt, and new_tokens >= 0"
        )
    if len(prompt) + new_tokens - 1 > model.context:  # the last is not read
        raise ValueError(
            f"a prompt of {len(prompt)} tokens and {new_tokens} new: this model "
            f"reads at most {model.context} (keep the last of the prompt)"
        )
    was_training = model.training
    model.eval()
    ids = torch.tensor([prompt])
    try:
        with torch.inference_mode():
            caches = model.new_caches() if use_cache else None
            step_input = ids  # the whole prompt first
            for _ in range(new_tokens):
                logits = model(step_input if use_cache else ids, caches)
                token = next_token(logits[:, -1], **sampling)
                ids = torch.cat([ids, token], dim=1)
                step_input = token  # with a cache, only the new token
    finally:
        model.train(was_training)
    return ids[0].tolist()


# --8<-- [end:generation]


# --8<-- [start:lora]
import torch
from torch import nn

ATTENTION_PROJECTIONS = ("q", "k", "v", "o")


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update:
    base(x) + (alpha / rank) * x A^T B^T, with B starting at zero."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        if base.bias is not None:
            raise ValueError("LoRALinear here adapts linear layers without bias")
        self.base, self.scale = base, alpha / rank
        base.weight.requires_grad_(False)
        self.lora_a = nn.Parameter(
            torch.randn(rank, base.in_features) / base.in_features**0.5
        )
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged(self):
        """A plain nn.Linear with the update added into its weight."""
        merged = nn.Linear(
            self.base.in_features, self.base.out_features, bias=False
        )
        with torch.no_grad():
            merged.weight.copy_(
                self.base.weight + self.scale * self.lora_b @ self.lora_a
            )
        return merged


def add_lora(model, rank=8, alpha=16):
    """Freeze every parameter, then wrap each attention projection in a
    LoRALinear: only the adapters train."""
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("this model has adapters already: merge_lora it first")
    model.requires_grad_(False)
    for block in model.blocks:
        for name in ATTENTION_PROJECTIONS:
            base = getattr(block.attention, name)
            setattr(block.attention, name, LoRALinear(base, rank, alpha))
    return model


def merge_lora(model):
    """Replace each LoRALinear by its merged nn.Linear, in place."""
    for block in model.blocks:
        for name in ATTENTION_PROJECTIONS:
            layer = getattr(block.attention, name)
            if isinstance(layer, LoRALinear):
                setattr(block.attention, name, layer.merged())
    return model


# --8<-- [end:lora]


# --8<-- [start:adapter-checkpoint]
import hashlib
import os
import secrets
from pathlib import Path

import torch


def base_fingerprint(model):
    """SHA-256 of the base weights (names, shapes, bytes), adapters left out:
    the same before and after add_lora."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" not in name:
            digest.update(name.replace(".base.", ".").encode())
            digest.update(str(tuple(tensor.shape)).encode())
            raw = tensor.detach().cpu().contiguous().flatten().view(torch.uint8)
            digest.update(raw.numpy().tobytes())  # any dtype, bfloat16 too
    return digest.hexdigest()


def save_adapters(model, path):
    """The adapters alone, with their rank and alpha (read from the model) and
    the base they were trained on, written atomically: a new file beside
    ``path``, flushed to disk, then renamed over it."""
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    if not layers:
        raise ValueError("this model has no adapters (add_lora first)")
    rank = layers[0].lora_a.shape[0]
    payload = {
        "base_sha256": base_fingerprint(model),
        "rank": rank,
        "alpha": layers[0].scale * rank,
        "adapters": {k: v for k, v in model.state_dict().items() if "lora_" in k},
    }
    path = Path(path)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    handle = os.open(temporary, flags, 0o666)  # not mkstemp's 0600
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())  # on disk before the rename shows it
        os.replace(temporary, path)  # the old file or the new, never half
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path


def load_adapters(model, path):
    """add_lora with the saved rank and alpha, then the saved adapters;
    refused when ``model`` is not the base they were trained on."""
    payload = torch.load(path, weights_only=True)
    expected = {"base_sha256", "rank", "alpha", "adapters"}
    if not isinstance(payload, dict) or not expected <= payload.keys():
        raise ValueError(f"{path}: not an adapter file from save_adapters")
    base = base_fingerprint(model)
    if payload["base_sha256"] != base:
        raise ValueError(
            f"adapters for base model {payload['base_sha256'][:12]}, this model "
            f"is {base[:12]}: load them into the base they were trained on"
        )
    add_lora(model, payload["rank"], payload["alpha"])
    unexpected = model.load_state_dict(
        payload["adapters"], strict=False
    ).unexpected_keys
    if unexpected:
        raise ValueError(f"adapters this model has no place for: {unexpected[:3]}")
    return model


# --8<-- [end:adapter-checkpoint]


# What the page runs, in page order, at module level as on the page:
# `python -m snippets.llm` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:corpus-demo]
    import sys

    files = stdlib_files()
    parts = split_by_file(files)
    version = sys.version.split()[0]
    print(f"Python {version}: {len(files)} files of its standard library")
    for name, part in parts.items():
        megabytes = sum(path.stat().st_size for path in part) / 1e6
        print(f"  {name:10} {len(part):4} files, {megabytes:5.1f} MB")
    train_texts = read_texts(parts["train"], max_characters=60_000)  # a slice
    val_texts = read_texts(parts["validation"], max_characters=20_000)
    print(f"this page reads {len(train_texts)} training files,", end=" ")
    print(f"{len(val_texts)} validation files")
    # --8<-- [end:corpus-demo]

    # --8<-- [start:bpe-demo]
    tokenizer = BytePairTokenizer.train("\n".join(train_texts), vocabulary_size=512)
    print(
        len(tokenizer),
        "ids: 256 bytes,",
        len(tokenizer.merges),
        "merges, 1 special",
    )
    learned = [tokenizer.vocabulary[new] for new in tokenizer.merges.values()]
    print("first merges:", learned[:6])
    print("longest:", max(learned, key=len))
    for text in ["    def __init__(self):", "naïve café, 東京 🐍", END_OF_TEXT]:
        ids = tokenizer.encode(text)
        same = tokenizer.decode(ids) == text
        size = len(utf8(text))
        print(f"{size:3} bytes, {len(ids):2} tokens, round trip {same}: {text!r}")
    documents = tokenizer.encode_documents(["x = 1", "y = 2"])
    print("two documents:", documents, "<- the special id", tokenizer.end_of_text)
    # --8<-- [end:bpe-demo]

    # --8<-- [start:library-tokenizer-demo]
    library = train_library_tokenizer("\n".join(train_texts), vocabulary_size=512)
    val_text = "\n".join(val_texts)
    val_bytes = len(utf8(val_text))
    ours = len(tokenizer.encode(val_text)) / val_bytes
    theirs = len(library.encode(val_text).ids) / val_bytes
    print(f"validation text: {val_bytes:,} bytes; tokens per byte:")
    print(f"  by hand {ours:.3f}, tokenizers {theirs:.3f} (vocabulary 512 each)")
    text = "naïve café, 東京 🐍"
    print(
        "tokenizers round trip:", library.decode(library.encode(text).ids) == text
    )
    print(
        "its special id:",
        library.token_to_id(END_OF_TEXT),
        library.get_vocab_size(),
    )
    # --8<-- [end:library-tokenizer-demo]

    # --8<-- [start:rmsnorm-demo]
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    ours, theirs = RMSNorm(16), nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)  # not all ones, to compare the scale too
        theirs.weight.copy_(ours.weight)
    print("equal to nn.RMSNorm:", torch.allclose(ours(x), theirs(x), atol=1e-6))
    print(
        "parameters: RMSNorm", sum(p.numel() for p in ours.parameters()), end=", "
    )
    print("LayerNorm", sum(p.numel() for p in nn.LayerNorm(16).parameters()))
    # --8<-- [end:rmsnorm-demo]

    # --8<-- [start:rope-demo]
    torch.manual_seed(0)
    cos, sin = rope_tables(length=64, head_dim=16)
    q, k = torch.randn(2, 16)

    def score(query_position, key_position):
        rotated_q = apply_rope(q, cos[query_position], sin[query_position])
        rotated_k = apply_rope(k, cos[key_position], sin[key_position])
        return (rotated_q * rotated_k).sum()

    print(f"query at 5, key at 3: {score(5, 3):.4f}")
    print(f"query at 60, key at 58: {score(60, 58):.4f}  (the same distance)")
    print(f"query at 5, key at 2: {score(5, 2):.4f}")
    print(
        "length kept:",
        torch.allclose(apply_rope(q, cos[9], sin[9]).norm(), q.norm()),
    )
    # --8<-- [end:rope-demo]

    # --8<-- [start:attention-demo]
    torch.manual_seed(0)
    attention = GroupedQueryAttention(d_model=64, heads=8, kv_heads=2)
    x = torch.randn(1, 10, 64)
    cos, sin = rope_tables(length=10, head_dim=8)
    out = attention(x, cos, sin)
    # the same without enable_gqa: each key and value head repeated for its 4
    q = apply_rope(attention.q(x).view(1, 10, 8, 8).transpose(1, 2), cos, sin)
    k = apply_rope(attention.k(x).view(1, 10, 2, 8).transpose(1, 2), cos, sin)
    v = attention.v(x).view(1, 10, 2, 8).transpose(1, 2)
    mixed = F.scaled_dot_product_attention(
        q,
        k.repeat_interleave(4, dim=1),
        v.repeat_interleave(4, dim=1),
        is_causal=True,
    )
    repeated = attention.o(mixed.transpose(1, 2).reshape(1, 10, 64))
    print(
        "equal to repeated keys and values:",
        torch.allclose(out, repeated, atol=1e-6),
    )
    full = GroupedQueryAttention(d_model=64, heads=8, kv_heads=8)
    for name, module in [
        ("8 heads, 2 key/value heads", attention),
        ("8 and 8", full),
    ]:
        print(
            f"{name:26} {sum(p.numel() for p in module.parameters()):6,} parameters"
        )
    swiglu = SwiGLU(64, hidden=192)
    print("SwiGLU 64 -> 192 -> 64:", sum(p.numel() for p in swiglu.parameters()))
    # --8<-- [end:attention-demo]

    # --8<-- [start:model-demo]
    torch.manual_seed(0)
    model = TinyLM(
        len(tokenizer), context=64, d_model=64, heads=4, kv_heads=2, depth=2
    )
    print(
        "head and embedding, one tensor:", model.head.weight is model.embed.weight
    )
    block = model.blocks[0]
    for name, part in [
        ("embedding (and head)", model.embed),
        ("block", block),
        ("  attention", block.attention),
        ("  SwiGLU", block.mlp),
        ("  two RMSNorms", nn.ModuleList([block.attention_norm, block.mlp_norm])),
        ("final RMSNorm", model.norm),
    ]:
        print(f"{name:22} {parameter_count(part):7,}")
    print(f"{'model':22} {parameter_count(model):7,}")
    print("logits:", tuple(model(torch.zeros(2, 64, dtype=torch.long)).shape))
    # --8<-- [end:model-demo]

    # --8<-- [start:training-demo]
    import math

    train_ids = torch.tensor(tokenizer.encode_documents(train_texts))
    val_ids = torch.tensor(tokenizer.encode_documents(val_texts))
    print(f"{len(train_ids):,} training tokens, {len(val_ids):,} validation tokens")
    vocabulary = len(tokenizer)
    print(f"untrained: {evaluate(model, val_ids):.2f} nats per token", end=" ")
    print(f"(ln {vocabulary} = {math.log(vocabulary):.2f})")
    losses = train(model, train_ids, steps=60, batch_size=8, lr=3e-3)
    print(f"training loss, 60 steps: {losses[0]:.2f} -> {losses[-1]:.2f}")
    validation = evaluate(model, val_ids)
    baseline = bigram_loss(train_ids, val_ids, vocabulary)
    print(f"validation: {validation:.2f} nats per token", end=", ")
    print(f"bigram baseline {baseline:.2f}")
    # --8<-- [end:training-demo]

    # --8<-- [start:kv-cache-demo]
    prompt = tokenizer.encode("def ")
    cached = generate(model, prompt, new_tokens=40)
    recomputed = generate(model, prompt, new_tokens=40, use_cache=False)
    print(
        "greedy, with and without the cache, the same tokens:", cached == recomputed
    )
    print(repr(tokenizer.decode(cached)))
    caches = model.new_caches()
    per_token = sum(
        c.keys[0, :, 0].numel() + c.values[0, :, 0].numel() for c in caches
    )
    print(f"the cache holds {per_token} numbers per token ({4 * per_token} bytes)")
    # --8<-- [end:kv-cache-demo]

    # --8<-- [start:is-causal-demo]
    torch.manual_seed(0)
    q = torch.randn(1, 4, 1, 16)  # one new query: the token at position 9
    k, v = torch.randn(2, 1, 4, 10, 16)  # the keys and values of positions 0..9
    flagged = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    print(
        "is_causal=True, one query: it sees key 0 only:",
        torch.allclose(flagged, v[:, :, :1]),
    )
    print(torch.ones(1, 10, dtype=torch.bool).tril(0).int())  # its mask, top left
    mask = torch.ones(1, 10, dtype=torch.bool).tril(10 - 1)  # aligned bottom right
    print(mask.int())
    right = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    print(
        "with it, the same as no mask:",
        torch.allclose(right, F.scaled_dot_product_attention(q, k, v)),
    )
    print(torch.ones(3, 10, dtype=torch.bool).tril(10 - 3).int())  # 3 new queries
    from torch.nn.attention.bias import causal_lower_right

    theirs = F.scaled_dot_product_attention(
        q, k, v, attn_mask=causal_lower_right(1, 10)
    )
    print("PyTorch's causal_lower_right, the same:", torch.allclose(right, theirs))
    # --8<-- [end:is-causal-demo]

    # --8<-- [start:sampling-demo]
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]])
    for temperature in (0.5, 1.0, 2.0):
        probabilities = (logits / temperature).softmax(-1)
        print(f"temperature {temperature}: {probabilities.numpy().round(2)}")
    generator = torch.Generator().manual_seed(0)
    for settings in ({"top_k": 2}, {"top_p": 0.9}, {}):
        drawn = torch.cat(
            [
                next_token(logits, 1.0, **settings, generator=generator)
                for _ in range(500)
            ]
        )
        print(f"{settings!s:15} ids drawn: {sorted(set(drawn.flatten().tolist()))}")
    for temperature in (0.7, 1.5):
        generator = torch.Generator().manual_seed(0)
        ids = generate(
            model,
            prompt,
            30,
            temperature=temperature,
            top_p=0.95,
            generator=generator,
        )
        print(f"temperature {temperature}, top-p 0.95:")
        print(f"  {tokenizer.decode(ids)!r}")
    print("training mode after generate:", model.training)
    # --8<-- [end:sampling-demo]

    # --8<-- [start:lora-demo]
    import copy

    tuned = add_lora(copy.deepcopy(model), rank=4, alpha=8)
    trainable = sum(p.numel() for p in tuned.parameters() if p.requires_grad)
    total = parameter_count(tuned)
    fraction = trainable / total
    print(f"trainable: {trainable:,} of {total:,} parameters ({fraction:.1%})")
    markdown = (
        "## Tensors\n\nA **tensor** holds numbers: `torch.zeros(2, 3)`.\n\n"
        "- Shapes: `x.shape`\n- Types: `x.dtype`\n\n"
    ) * 20
    markdown_ids = torch.tensor(tokenizer.encode(markdown))
    before = evaluate(tuned, markdown_ids)
    train(tuned, markdown_ids, steps=30, batch_size=8, lr=1e-2)
    after = evaluate(tuned, markdown_ids)
    print(f"on this Markdown: {before:.2f} -> {after:.2f} nats per token")
    frozen = tuned.blocks[0].attention.q.base.weight
    print(
        "base weights unchanged:",
        torch.equal(frozen, model.blocks[0].attention.q.weight),
    )
    merged = merge_lora(copy.deepcopy(tuned))
    sample_ids = markdown_ids[:64][None]
    with torch.no_grad():
        same = torch.allclose(merged(sample_ids), tuned(sample_ids), atol=1e-5)
    print(
        "merged, equal to base + adapters:",
        same,
        type(merged.blocks[0].attention.q).__name__,
    )
    # --8<-- [end:lora-demo]

    # --8<-- [start:adapter-checkpoint-demo]
    import io
    import tempfile

    folder = Path(tempfile.mkdtemp())
    path = save_adapters(tuned, folder / "adapters.pt")
    whole = io.BytesIO()
    torch.save(model.state_dict(), whole)
    kilobytes = path.stat().st_size / 1e3, len(whole.getvalue()) / 1e3
    print("adapter file {:.0f} kB, the whole model {:.0f} kB".format(*kilobytes))
    print(
        "files in the folder:", [p.name for p in folder.iterdir()]
    )  # no temporary left
    restored = load_adapters(copy.deepcopy(model), path)
    with torch.no_grad():
        print(
            "restored, equal:",
            torch.allclose(restored(sample_ids), tuned(sample_ids), atol=1e-6),
        )
    # --8<-- [end:adapter-checkpoint-demo]

    # --8<-- [start:errors]
    import textwrap

    torch.manual_seed(1)
    other = TinyLM(
        len(tokenizer), context=64, d_model=64, heads=4, kv_heads=2, depth=2
    )
    for bad in (
        lambda: generate(model, list(range(100)), new_tokens=1),  # context: 64
        lambda: generate(model, prompt, 5, temperature=0),
        lambda: generate(model, prompt, 5, temperature=1.0, top_p=1.5),
        lambda: load_adapters(other, path),  # another base model
        # "caf\udce9": a byte that surrogateescape could not decode
        lambda: tokenizer.encode("caf\udce9"),
    ):
        try:
            bad()
        except ValueError as error:
            print(textwrap.fill(f"ValueError: {error}", 84))
    # --8<-- [end:errors]

    # --8<-- [start:exercise-cache-size]
    for kv_heads in (4, 2, 1):  # multi-head, grouped-query, multi-query
        torch.manual_seed(0)
        variant = TinyLM(
            512, context=64, d_model=64, heads=4, kv_heads=kv_heads, depth=2
        )
        caches = variant.new_caches()
        numbers = sum(c.keys.numel() + c.values.numel() for c in caches)
        # keys and values, 2 layers, the heads, 16 numbers each, 64 positions
        by_formula = 2 * 2 * kv_heads * 16 * 64
        attention = parameter_count(variant.blocks[0].attention)
        print(
            f"{kv_heads} key/value heads: cache {numbers:6,} numbers "
            f"(formula {by_formula:6,}); attention: {attention:6,} weights"
        )
    # --8<-- [end:exercise-cache-size]

    # --8<-- [start:exercise-vocabulary]
    for size in (300, 512, 1024):
        trained = BytePairTokenizer.train(
            "\n".join(train_texts), vocabulary_size=size
        )
        per_byte = len(trained.encode(val_text)) / val_bytes
        print(f"vocabulary {size:5}: {per_byte:.3f} tokens per byte")
    # --8<-- [end:exercise-vocabulary]
