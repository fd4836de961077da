"""docs/llm.md: the corpus split by file, the BPE by hand (merges, round trips, special tokens) against tokenizers',
RMSNorm, RoPE's relative positions, grouped-query attention, the model's parameters, training against the bigram
baseline, the KV cache's equality with generation without it and its mask, sampling, LoRA's merge and its adapter-only
checkpoint, bad input, and the recorded run against every claim the page makes about it.

The page's blocks run once here in page order (the ``page`` and ``printed`` fixtures of tests/conftest.py); the
tests that need other inputs call the module's functions."""

import copy
import math
import re
import sysconfig
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import (  # noqa: F401 (test_the_page_prints_what_its_build_shows: a test)
    read_record_or_skip,
    report_without_record,
    run_sections,
    snippet_sections,
    test_the_page_prints_what_its_build_shows,
)
from torch import nn

import site_tools.records as records
import snippets.llm as s


def tiny_model(seed=0, vocabulary=300, context=32, kv_heads=2):
    torch.manual_seed(seed)
    return s.TinyLM(vocabulary, context=context, d_model=32, heads=4, kv_heads=kv_heads, depth=2)


# --- the corpus


def test_the_corpus_is_split_by_file_without_tests_or_third_party_packages(page, printed):
    root = Path(sysconfig.get_paths()["stdlib"])
    files, parts = page.files, page.parts
    assert files == s.stdlib_files() and len(files) > 300
    assert all(not {"test", "tests", "site-packages"} & set(f.relative_to(root).parts[:-1]) for f in files)
    assert sorted(sum(parts.values(), [])) == files  # each file in exactly one part
    again = s.split_by_file(files[::-1])
    assert {name: sorted(part) for name, part in again.items()} == parts  # the part depends on the name alone
    assert 0.02 < len(parts["validation"]) / len(files) < 0.09 and 0.02 < len(parts["test"]) / len(files) < 0.09
    assert re.search(r"Python 3\.\d+\.\d+: \d+ files of its standard library", printed)


def test_read_texts_stops_after_the_file_that_reaches_the_limit(tmp_path):
    paths = []
    for name, text in (("a.py", "x" * 30), ("b.py", "y" * 30), ("c.py", "z" * 30)):
        (tmp_path / name).write_text(text)
        paths.append(tmp_path / name)
    assert [len(t) for t in s.read_texts(paths, max_characters=40)] == [30, 30]
    assert len(s.read_texts(paths)) == 3


# --- the tokenizers


TEXTS = [
    "",
    " ",
    "\n\n\t  x",
    "    def __init__(self):\n        return 42",
    "naïve café, 東京 🐍",
    "e\u0301 combining, ß, Ω, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "<|endoftext|> in the middle <|endoftext|>",
    "a_b2 3.14 !== ~~ x**2",
]


@pytest.mark.parametrize("text", TEXTS)
def test_bpe_round_trips_every_text_and_the_pieces_cover_it(page, text):
    assert "".join(s.pieces(text)) == text
    ids = page.tokenizer.encode(text)
    assert page.tokenizer.decode(ids) == text
    assert all(0 <= i < page.tokenizer.end_of_text for i in ids)  # the special id never comes from text


def test_bpe_training_merges_the_most_frequent_pair_first():
    tokenizer = s.BytePairTokenizer.train("aaab aaab aaab cd", vocabulary_size=256 + 4)
    a, b = ord("a"), ord("b")
    # "aa" (6 times), then "ab" and "aa"+"a" (3 times each: the smaller ids first), then "aa"+"ab"
    assert list(tokenizer.merges) == [(a, a), (a, b), (256, 257)]
    assert tokenizer.vocabulary[258] == b"aaab" and len(tokenizer) == 260 and tokenizer.end_of_text == 259
    assert tokenizer.encode("aaab") == [258] and tokenizer.encode(" aaab") == [32, 258]


def test_bpe_training_counts_pairs_incrementally_as_a_recount_would():
    """The incremental pair counts give the merges that recounting every pair after each merge gives."""
    text = "the cat sat on the mat; that hat, the cat's hat " * 3

    def recount_merges(text, merges_wanted):
        words = [list(p.encode()) for p in s.pieces(text)]
        merges = {}
        for new in range(256, 256 + merges_wanted):
            pairs = {}
            for word in words:
                for pair in zip(word, word[1:]):
                    pairs[pair] = pairs.get(pair, 0) + 1
            if not pairs:
                break
            best = max(pairs, key=lambda p: (pairs[p], -p[0], -p[1]))
            merges[best] = new
            words = [s.merge_pair(word, best, new) for word in words]
        return merges

    assert s.BytePairTokenizer.train(text, 256 + 20 + 1).merges == recount_merges(text, 20)


def test_special_tokens_separate_documents_and_text_cannot_forge_them(page, printed):
    tokenizer = page.tokenizer
    ids = tokenizer.encode_documents(["x = 1", "y = 2"])
    assert ids.count(tokenizer.end_of_text) == 2 and ids[-1] == tokenizer.end_of_text
    assert tokenizer.decode(ids) == "x = 1<|endoftext|>y = 2<|endoftext|>"
    assert tokenizer.end_of_text not in tokenizer.encode(s.END_OF_TEXT)
    assert f"<- the special id {tokenizer.end_of_text}" in printed


def test_the_page_bpe_output_as_the_page_describes_it(page, printed):
    tokenizer = page.tokenizer
    assert len(tokenizer) == 512 and len(tokenizer.merges) == 255
    assert all(set(token) <= {32} for token in page.learned[:3])  # "the first merges are runs of spaces"
    longest = max(page.learned, key=len)
    assert longest.startswith(b"\n") and set(longest[1:]) == {32}  # a newline with its indentation
    cjk = "東京 🐍"
    assert tokenizer.encode(cjk) == list(cjk.encode())  # no merge covers them: byte by byte
    assert printed.count("round trip True") == 3
    assert tokenizer.decode([0xE6]) == "\ufffd"  # the first byte of a character alone


def test_the_library_tokenizer_compresses_like_ours(page, printed):
    ours, theirs = map(float, re.search(r"by hand ([\d.]+), tokenizers ([\d.]+)", printed).groups())
    assert abs(ours - theirs) < 0.01 and 0.3 < ours < 0.6  # "about as well"
    assert "tokenizers round trip: True" in printed
    assert page.library.token_to_id(s.END_OF_TEXT) == 0 and "its special id: 0 512" in printed
    for text in TEXTS:
        assert page.library.decode(page.library.encode(text).ids, skip_special_tokens=False) == text


# --- the blocks


def test_rmsnorm_equals_nn_rmsnorm_on_other_shapes(printed):
    torch.manual_seed(3)
    x = torch.randn(4, 3, 7, 10) * 5
    ours, theirs = s.RMSNorm(10), nn.RMSNorm(10, eps=1e-6)
    assert torch.allclose(ours(x), theirs(x), atol=1e-5)
    assert "equal to nn.RMSNorm: True" in printed and "parameters: RMSNorm 16, LayerNorm 32" in printed


def test_rope_attention_scores_depend_only_on_the_relative_position():
    torch.manual_seed(0)
    cos, sin = s.rope_tables(200, 32)
    q, k = torch.randn(2, 32)
    scores = (
        torch.stack([s.apply_rope(q, cos[m], sin[m]) for m in range(200)])
        @ torch.stack([s.apply_rope(k, cos[n], sin[n]) for n in range(200)]).T
    )  # scores[m, n]: query at m, key at n
    for distance in (-50, -3, 0, 1, 7, 120):
        diagonal = scores.diagonal(offset=-distance)  # every (m, m - distance)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4), distance
    assert not torch.allclose(scores[10, 7], scores[10, 6], atol=1e-3)  # but the distance matters
    frequency = 10000.0 ** (-torch.arange(0, 32, 2) / 32)  # pair i turns by position x 10000^(-2i/d)
    assert torch.allclose(cos[5], torch.cos(5 * frequency)) and torch.allclose(sin[5], torch.sin(5 * frequency))
    x = torch.randn(32)
    turned = s.apply_rope(x, cos[5], sin[5])  # pair (i, i + 16) rotated by its angle
    i = 3
    angle = 5 * frequency[i]
    assert torch.allclose(turned[i], x[i] * angle.cos() - x[i + 16] * angle.sin(), atol=1e-6)
    assert torch.allclose(turned[i + 16], x[i] * angle.sin() + x[i + 16] * angle.cos(), atol=1e-6)


def test_rope_in_the_model_shifts_with_the_positions(printed):
    """The whole attention layer: the same tokens at later positions give the same outputs (relative positions)."""
    torch.manual_seed(0)
    attention = s.GroupedQueryAttention(32, 4, 2)
    cos, sin = s.rope_tables(40, 8)
    x = torch.randn(1, 6, 32)
    early = attention(x, cos[:6], sin[:6])
    late = attention(x, cos[30:36], sin[30:36])
    assert torch.allclose(early, late, atol=1e-5)
    scores = re.findall(r"query at \d+, key at \d+: (-?[\d.]+)", printed)
    assert scores[0] == scores[1] != scores[2] and "length kept: True" in printed


def test_grouped_query_attention_uses_enable_gqa_and_equals_repeated_heads(monkeypatch, printed):
    assert "equal to repeated keys and values: True" in printed
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(s.F, "scaled_dot_product_attention", lambda *a, **kw: calls.append((a, kw)) or real(*a, **kw))
    torch.manual_seed(1)
    attention = s.GroupedQueryAttention(48, 6, 3)
    cos, sin = s.rope_tables(5, 8)
    attention(torch.randn(2, 5, 48), cos, sin)
    (q, k, _), kwargs = calls[0]
    assert kwargs["enable_gqa"] is True and q.shape[1] == 6 and k.shape[1] == 3  # the fewer heads, not copies
    assert re.search(r"8 heads, 2 key/value heads +10,240 parameters", printed)
    assert re.search(r"8 and 8 +16,384 parameters", printed) and "SwiGLU 64 -> 192 -> 64: 36864" in printed
    with pytest.raises(ValueError, match="key/value heads the heads"):
        s.GroupedQueryAttention(48, 6, 4)


def test_the_model_parameters_as_printed_and_tied(page, printed):
    model = page.model
    assert model.head.weight is model.embed.weight
    d, hidden, vocabulary = 64, 192, 512
    attention = d * d * 2 + 2 * d * (2 * 16)  # q and o; k and v for 2 key/value heads of 16
    block = attention + 3 * d * hidden + 2 * d
    assert re.search(rf"  attention +{attention:,}\n", printed) and re.search(rf"block +{block:,}\n", printed)
    assert s.parameter_count(model) == vocabulary * d + 2 * block + d
    assert "cos" not in model.state_dict() and "logits: (2, 64, 512)" in printed  # RoPE tables are not weights


def test_the_model_is_causal():
    model = tiny_model().eval()
    ids = torch.randint(0, 300, (1, 20))
    changed = ids.clone()
    changed[0, 12:] = (changed[0, 12:] + 1) % 300
    with torch.no_grad():
        assert torch.allclose(model(ids)[0, :12], model(changed)[0, :12], atol=1e-5)


# --- training


def test_evaluate_is_the_cross_entropy_of_whole_windows():
    model = tiny_model().eval()
    ids = torch.randint(0, 300, (3 * 32 + 1 + 5,))  # 3 windows, and 5 tokens left over
    with torch.no_grad():
        logits = model(ids[: 3 * 32].view(3, 32))
        direct = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[1 : 3 * 32 + 1])
    assert s.evaluate(model, ids) == pytest.approx(direct.item(), rel=1e-5)


def test_weight_decay_skips_the_norms_and_gradients_are_clipped(monkeypatch):
    seen = {}
    real_adamw, real_clip = torch.optim.AdamW, torch.nn.utils.clip_grad_norm_

    def adamw(groups, **options):
        seen["groups"] = groups
        return real_adamw(groups, **options)

    def clip(parameters, max_norm):
        seen["max_norm"] = max_norm
        return real_clip(parameters, max_norm)

    monkeypatch.setattr(torch.optim, "AdamW", adamw)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    model = tiny_model()
    s.train(model, torch.randint(0, 300, (200,)), steps=1, batch_size=2, lr=1e-3, weight_decay=0.1)
    decayed, plain = seen["groups"]
    assert all(p.ndim >= 2 for p in decayed["params"]) and plain["weight_decay"] == 0.0
    assert {id(p) for p in plain["params"]} == {id(p) for n, p in model.named_parameters() if "norm" in n}
    assert seen["max_norm"] == 1.0


def test_bigram_loss_of_a_known_distribution():
    train = torch.tensor([0, 1, 0, 1, 0])  # after 0: 1 twice; after 1: 0 twice; add-one over 2 symbols
    assert s.bigram_loss(train, torch.tensor([0, 1]), 2) == pytest.approx(-math.log(3 / 4))
    assert s.bigram_loss(train, torch.tensor([0, 0]), 2) == pytest.approx(-math.log(1 / 4))


def test_training_claims_of_the_page(printed):
    untrained = float(re.search(r"untrained: ([\d.]+) nats", printed)[1])
    assert abs(untrained - math.log(512)) < 0.1  # "about ln(512)"
    first, last = map(float, re.search(r"training loss, 60 steps: ([\d.]+) -> ([\d.]+)", printed).groups())
    validation, bigram = map(
        float, re.search(r"validation: ([\d.]+) nats per token, bigram baseline ([\d.]+)", printed).groups()
    )
    assert last < first - 0.5 and validation < untrained - 0.5  # "a long way"
    assert validation > bigram  # "not yet past the bigram baseline"


def test_the_learning_rate_warms_up_then_follows_a_cosine_to_a_tenth(monkeypatch):
    rates = []
    real = s.torch.optim.AdamW

    def adamw(*args, **kwargs):
        optimizer = real(*args, **kwargs)
        optimizer.register_step_pre_hook(lambda opt, a, kw: rates.append(opt.param_groups[0]["lr"]))
        return optimizer

    monkeypatch.setattr(s.torch.optim, "AdamW", adamw)
    s.train(tiny_model(), torch.randint(0, 300, (200,)), steps=20, batch_size=2, lr=1.0)
    assert rates[:2] == pytest.approx([0.5, 1.0]) and rates[-1] == pytest.approx(
        0.1 + 0.45 * (1 + math.cos(math.pi * 17 / 18))
    )
    assert all(a >= b for a, b in zip(rates[1:], rates[2:]))
    assert len(s.train(tiny_model(), torch.randint(0, 300, (200,)), steps=1, batch_size=2, lr=1.0)) == 1


def test_train_trains_only_what_requires_gradients_and_evaluate_restores_the_mode():
    model = tiny_model()
    model.embed.weight.requires_grad_(False)
    frozen = model.embed.weight.clone()
    ids = torch.randint(0, 300, (500,))
    steps = []
    losses = s.train(model, ids, steps=5, batch_size=4, lr=1e-2, after_step=steps.append)
    assert len(losses) == 5 and steps == [1, 2, 3, 4, 5] and torch.equal(model.embed.weight, frozen)
    model.train()
    s.evaluate(model, ids)
    assert model.training
    assert s.evaluate(model.eval(), ids) == pytest.approx(s.evaluate(model, ids))


# --- generation


def test_greedy_generation_with_the_cache_equals_generation_without_it(page, printed):
    assert "greedy, with and without the cache, the same tokens: True" in printed
    for seed in (0, 1, 2):
        model = tiny_model(seed)
        prompt = torch.randint(0, 300, (5,), generator=torch.Generator().manual_seed(seed)).tolist()
        assert s.generate(model, prompt, 25) == s.generate(model, prompt, 25, use_cache=False)
    for prompt in (page.tokenizer.encode("import "), page.tokenizer.encode("class A:\n")):
        assert s.generate(page.model, prompt, 20) == s.generate(page.model, prompt, 20, use_cache=False)


def test_cached_logits_equal_the_full_forward_also_for_several_new_tokens_at_once():
    model = tiny_model().eval()
    ids = torch.randint(0, 300, (1, 15))
    with torch.no_grad():
        full = model(ids)
        caches = model.new_caches()
        pieces = [model(ids[:, :6], caches), model(ids[:, 6:9], caches), model(ids[:, 9:10], caches)]
        pieces.append(model(ids[:, 10:], caches))
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)  # 3 new queries: the bottom-right mask
    assert caches[0].length == 15


def test_the_is_causal_pitfall_is_shown(printed):
    assert "is_causal=True, one query: it sees key 0 only: True" in printed
    assert "with it, the same as no mask: True" in printed
    assert "[[1, 1, 1, 1, 1, 1, 1, 1, 0, 0]," in printed


def test_the_cache_size_and_the_greedy_text(page, printed):
    assert "the cache holds 128 numbers per token (512 bytes)" in printed  # 2 x 2 layers x 2 heads x 16
    generated = page.tokenizer.decode(page.cached)[len("def ") :]
    assert generated.strip() == "" or generated.count(" ") > len(generated) / 2  # "indentation is frequent"


def test_sampling_settings_restrict_and_shape_the_draws(printed):
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]])
    probabilities = logits.softmax(-1)[0]
    generator = torch.Generator().manual_seed(1)
    for top_p in (0.5, 0.7, 0.9, 0.97, 1.0):
        drawn = {s.next_token(logits, 1.0, top_p=top_p, generator=generator).item() for _ in range(400)}
        needed = int((probabilities.cumsum(0) < top_p).sum()) + 1  # the fewest whose mass reaches top_p
        assert drawn == set(range(min(needed, 5))), top_p
    assert {s.next_token(logits, 5.0, top_k=3, generator=generator).item() for _ in range(300)} == {0, 1, 2}
    order = torch.tensor([3, 0, 4, 1, 2])  # the same logits in another order: the kept ids follow them
    shuffled = logits[:, order]
    for top_p in (0.7, 0.9):
        drawn = {s.next_token(shuffled, 1.0, top_p=top_p, generator=generator).item() for _ in range(400)}
        needed = int((probabilities.cumsum(0) < top_p).sum()) + 1
        assert drawn == {int((order == i).nonzero()) for i in range(needed)}, top_p
    tied = torch.tensor([[2.0, 1.0, 1.0, 0.0]])
    assert {s.next_token(tied, 1.0, top_k=2, generator=generator).item() for _ in range(300)} == {0, 1, 2}
    assert s.next_token(logits).item() == 0  # greedy
    one = s.next_token(logits, 1.0, generator=torch.Generator().manual_seed(4))
    assert one == s.next_token(logits, 1.0, generator=torch.Generator().manual_seed(4))  # seeded
    assert "{'top_k': 2}    ids drawn: [0, 1]" in printed and "{'top_p': 0.9}  ids drawn: [0, 1, 2]" in printed
    assert "temperature 0.5: [[0.86 0.12 0.02 0.   0.  ]]" in printed
    assert "training mode after generate: True" in printed


def test_generate_runs_in_eval_mode_under_inference_mode():
    model = tiny_model().train()
    seen = []
    model.blocks[0].register_forward_pre_hook(
        lambda module, args: seen.append((module.training, torch.is_inference_mode_enabled()))
    )
    s.generate(model, [1, 2], 3)
    assert seen == [(False, True)] * 3 and model.training


# --- LoRA


def test_lora_trains_only_the_adapters_and_merges_exactly(page, printed):
    model = tiny_model()
    tuned = s.add_lora(copy.deepcopy(model), rank=2, alpha=4)
    ids = torch.randint(0, 300, (1, 20))
    with torch.no_grad():
        assert torch.equal(tuned(ids), model(ids))  # B starts at zero: the base model exactly
        for layer in tuned.modules():
            if isinstance(layer, s.LoRALinear):
                layer.lora_b.normal_()  # an update that is not zero
        merged = s.merge_lora(copy.deepcopy(tuned))
        layer = tuned.blocks[0].attention.q
        expected = model.blocks[0].attention.q.weight + (4 / 2) * layer.lora_b @ layer.lora_a  # W + (alpha/r) B A
        assert torch.allclose(merged.blocks[0].attention.q.weight, expected, atol=1e-6)
        assert not torch.allclose(tuned(ids), model(ids), atol=1e-3)
        assert torch.allclose(merged(ids), tuned(ids), atol=1e-5)
    names = {name for name, p in tuned.named_parameters() if p.requires_grad}
    assert names and all(".lora_" in name and ".attention." in name for name in names)
    assert len(names) == 2 * 4 * 2  # A and B, 4 projections, 2 blocks
    trainable, total = map(
        lambda v: int(v.replace(",", "")), re.search(r"trainable: ([\d,]+) of ([\d,]+)", printed).groups()
    )
    assert trainable == 2 * (2 * 4 * (64 + 64) + 2 * 4 * (64 + 32))  # 2 blocks, rank 4: q, o 64 -> 64; k, v 64 -> 32
    assert "base weights unchanged: True" in printed and "merged, equal to base + adapters: True Linear" in printed
    before, after = map(float, re.search(r"on this Markdown: ([\d.]+) -> ([\d.]+)", printed).groups())
    assert after < before
    with pytest.raises(ValueError, match="this model has adapters already"):
        s.add_lora(tuned)
    with pytest.raises(ValueError, match="without bias"):
        s.LoRALinear(torch.nn.Linear(4, 4), rank=2, alpha=4)


def test_the_adapter_checkpoint_round_trips_and_refuses_another_base(page, printed, tmp_path):
    model = tiny_model()
    fingerprint = s.base_fingerprint(model)
    tuned = s.add_lora(copy.deepcopy(model), rank=2, alpha=4)
    assert s.base_fingerprint(tuned) == fingerprint  # the adapters are not part of it
    with torch.no_grad():
        for layer in tuned.modules():
            if isinstance(layer, s.LoRALinear):
                layer.lora_b.normal_()
    path = s.save_adapters(tuned, tmp_path / "adapters.pt")
    saved = torch.load(path, weights_only=True)
    assert all("lora_" in name for name in saved["adapters"]) and saved["base_sha256"] == fingerprint
    restored = s.load_adapters(copy.deepcopy(model), path)
    ids = torch.randint(0, 300, (1, 10))
    with torch.no_grad():
        assert torch.equal(restored(ids), tuned(ids))
    with pytest.raises(ValueError, match=f"adapters for base model {fingerprint[:12]}, this model is"):
        s.load_adapters(tiny_model(seed=5), path)  # the same shapes, other weights
    with pytest.raises(ValueError, match="adapters for base model"):
        s.load_adapters(tiny_model(kv_heads=1), path)  # other shapes
    assert (saved["rank"], saved["alpha"]) == (2, 4)  # read from the model, not typed by the caller
    assert restored.blocks[0].attention.q.scale == 2
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="not an adapter file from save_adapters"):
        s.load_adapters(copy.deepcopy(model), tmp_path / "weights.pt")
    saved["adapters"]["blocks.9.attention.q.lora_a"] = torch.zeros(1)
    torch.save(saved, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match="adapters this model has no place for"):
        s.load_adapters(copy.deepcopy(model), tmp_path / "extra.pt")
    with pytest.raises(ValueError, match="no adapters"):
        s.save_adapters(model, tmp_path / "none.pt")
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # a file with the usual permissions, not mkstemp's
    assert "restored, equal: True" in printed and "files in the folder: ['adapters.pt']" in printed
    kilobytes = re.search(r"adapter file (\d+) kB, the whole model (\d+) kB", printed)
    assert int(kilobytes[1]) < int(kilobytes[2]) / 10


def test_an_interrupted_save_leaves_the_old_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    tuned = s.add_lora(tiny_model(), rank=2, alpha=4)
    path = s.save_adapters(tuned, tmp_path / "adapters.pt")
    old = path.read_bytes()

    def interrupted(payload, file):
        file.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(s.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        s.save_adapters(tuned, path)
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["adapters.pt"]


# --- bad input and the exercises


def test_bad_input_gets_a_clear_error(printed, page):
    errors = [line for line in printed.splitlines() if line.startswith("ValueError:")]
    assert len(errors) == 5
    assert "a prompt of 100 tokens and 1 new: this model reads at most 64" in errors[0]
    assert "temperature 0: use a value above 0" in errors[1]
    assert "top_p 1.5: use a value in (0, 1]" in errors[2]
    assert "adapters for base model" in errors[3]
    assert "character \\udce9 at position 3 has no UTF-8 bytes" in errors[4]
    for settings, message in (
        ({"temperature": -1.0}, "temperature -1.0"),
        ({"temperature": 1.0, "top_p": 0.0}, "top_p 0.0"),
    ):
        with pytest.raises(ValueError, match=message):
            s.generate(page.model, [1], 2, **settings)
    with pytest.raises(ValueError, match="top_k 0: keep at least 1 token"):
        s.generate(page.model, [1], 2, temperature=1.0, top_k=0)
    with pytest.raises(ValueError, match="a prompt of 60 tokens and 10 new: this model reads at most 64"):
        s.generate(page.model, [1] * 60, 10)
    assert len(s.generate(page.model, [1] * 64, 1)) == 65  # the last token is never read: it fits
    with pytest.raises(ValueError, match="top_k and top_p need a temperature"):
        s.generate(page.model, [1], 2, top_p=0.5)  # would be ignored by greedy decoding
    with pytest.raises(ValueError, match="need at least one token of prompt, and new_tokens >= 0"):
        s.generate(page.model, [], 2)
    with pytest.raises(ValueError, match="new_tokens >= 0"):
        s.generate(page.model, [1], -1)
    with pytest.raises(ValueError, match=r"ids \[5000\]: this tokenizer has 0 to"):
        page.tokenizer.decode([1, 5000])
    with pytest.raises(ValueError, match="vocabulary_size 100: at least 257"):
        s.BytePairTokenizer.train("abc", 100)
    with pytest.raises(ValueError, match="tokens: training needs more than the context"):
        s.train(tiny_model(), torch.arange(20), steps=1, batch_size=2, lr=1e-3)
    with pytest.raises(ValueError, match="tokens: evaluation needs more than the context"):
        s.evaluate(tiny_model(), torch.arange(20))
    assert s.TinyLM(300, context=8, d_model=8, heads=2, kv_heads=1, depth=1).blocks[0].mlp.up.out_features == 64

    with pytest.raises(ValueError, match="positions 0 to 64: this model reads at most 64"):
        page.model(torch.zeros(1, 65, dtype=torch.long))


def test_generate_restores_the_mode_when_it_fails(monkeypatch):
    model = tiny_model().train()

    def failing(*args, **kwargs):
        raise RuntimeError("a failure in the middle")

    monkeypatch.setattr(s, "next_token", failing)
    with pytest.raises(RuntimeError):
        s.generate(model, [1, 2], 3)
    assert model.training


def test_the_exercises(printed):
    rows = re.findall(r"(\d) key/value heads: cache +([\d,]+) numbers \(formula +([\d,]+)\)", printed)
    assert [(heads, cache) for heads, cache, _ in rows] == [("4", "16,384"), ("2", "8,192"), ("1", "4,096")]
    assert all(cache == formula for _, cache, formula in rows)
    per_byte = [float(v) for v in re.findall(r"vocabulary +\d+: ([\d.]+) tokens per byte", printed)]
    assert len(per_byte) == 3 and per_byte[0] > per_byte[1] > per_byte[2]
    assert per_byte[0] - per_byte[1] > per_byte[1] - per_byte[2]  # "diminishing returns"


# --- the recorded run: python -m benchmarks.llm --record


@pytest.fixture(scope="module")
def record():
    return read_record_or_skip("llm")


def test_the_record_is_current(record):
    records.check_fresh(record)


def test_the_record_supports_what_the_page_says(record):
    metrics = record["metrics"]
    tokenizers = metrics["tokenizers"]
    ours, library = tokenizers["by_hand"], tokenizers["tokenizers"]
    assert abs(ours["tokens_per_byte"] - library["tokens_per_byte"]) < 0.01  # "within 0.01 tokens per byte"
    assert ours["train_seconds"] > 2 * library["train_seconds"]  # "several times faster"
    training = metrics["training"]
    chosen = min(training["candidates"], key=lambda t: t["validation"])
    assert training["chosen"] == chosen["name"] and len(training["seeds"]) == 5
    assert [t["name"] for t in training["candidates"]].index(chosen["name"]) not in (0, 2)  # not at the grid's edge
    baseline = training["baseline"]
    for run in training["seeds"]:  # "well below the bigram baseline", every seed, both parts
        assert run["validation"] < baseline["validation"] - 0.3 and run["test"] < baseline["test"] - 0.3
    assert all(t["train_seconds"] < 90 for t in training["candidates"])  # "under a minute and a half" a run
    assert training["seconds"] < 12 * 60  # the training part, about 10 minutes
    for tried in training["candidates"]:  # "the slice turns out harder than the whole"
        assert tried["validation_curve"][-1][1] > tried["validation"]
    low = training["samples"][0]["text"]
    assert "\n    " in low and any(word in low for word in ("return", "def ", '"""'))  # "looks like Python"
    rows = metrics["kv_cache"]["rows"]
    speedups = [row["cache"] / row["no_cache"] for row in rows]
    assert all(row["same_tokens"] for row in rows) and speedups == sorted(speedups) and speedups[-1] > 1
    no_cache = [row["no_cache"] for row in rows]
    cached = [row["cache"] for row in rows]
    assert no_cache == sorted(no_cache, reverse=True) and min(cached) > 0.9 * max(cached)  # "less than a tenth"
    tuning = metrics["fine_tuning"]
    before = tuning["before"]["validation"]
    lora, full = ([run["validation"] for run in tuning[kind]["seeds"]] for kind in ("LoRA", "full"))
    assert max(lora) < before and max(full) < before and max(full) < min(lora)  # on every seed
    lora_tried = tuning["LoRA"]["candidates"]
    for kind in ("LoRA", "full"):  # "the highest learning rate of the grid won"
        assert tuning[kind]["chosen"] == max(tuning[kind]["candidates"], key=lambda t: t["lr"])["name"]
    assert all(0.02 < t["trainable"] / t["parameters"] < 0.05 for t in lora_tried)  # "a few percent"
    assert 0.02 < tuning["LoRA"]["adapter_bytes"] / tuning["LoRA"]["base_bytes"] < 0.06
    assert metrics["threads"] == 2 and metrics["tokenizers_version"] == "0.23.3"


REPORT = "benchmarks/reports/llm.py"


def test_the_page_says_not_recorded_yet_while_the_record_is_missing(monkeypatch):
    outputs = report_without_record(monkeypatch, REPORT)
    assert len(outputs) == 5 and all(
        "Not recorded yet" in out and "python -m benchmarks.llm --record" in out for out in outputs
    )
