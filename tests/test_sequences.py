"""docs/sequences.md: padding, packing and the recurrent layers' shapes, the RNN by hand, vanishing gradients,
attention and its masks against PyTorch's, the transformer block, the projects' models, bad input, and the recorded
runs against every number the page states.

The page's blocks run once here in page order (the ``page`` and ``printed`` fixtures of tests/conftest.py); the
tests that need other inputs call the module's functions."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import DOCS, test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)
from torch import nn

import snippets.sequences as s
from site_tools.records import check_fresh, read_record


def test_padding_masks_and_packing(page, printed):
    assert page.padded.tolist() == [[5, 2, 9, 4], [7, 1, 0, 0], [3, 8, 6, 0]]
    assert page.mask.sum().item() == 9 and "steps computed: 9 of 12" in printed
    assert "sequences still running at each step: [3, 3, 2, 1]" in printed
    assert torch.equal(page.embedding(torch.tensor([0])), torch.zeros(1, 4))  # padding_idx


def test_recurrent_layer_shapes(printed):
    assert "RNN  out (3, 4, 6)  h (1, 3, 6)" in printed
    assert "LSTM out (3, 4, 12) h (4, 3, 6) c (4, 3, 6)" in printed  # 2 layers x 2 directions
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
    assert rnn[50] / rnn[99] < 1e-10  # "down by more than ten orders of magnitude after 50 steps"
    assert lstm[0] / lstm[99] < 1e-6  # the default LSTM still vanishes
    assert 0.1 < opened[0] / opened[99] < 10  # "reaches step 0 undiminished"
    assert plt_has_figure_with_title("How much each input step moves the last output", page)


def plt_has_figure_with_title(title, page):
    return page.ax.get_title() == title and page.ax.get_yscale() == "log"


def test_attention_equals_pytorch_with_and_without_masks(printed):
    assert "equal to F.scaled_dot_product_attention: True" in printed
    assert "causal, equal to is_causal=True: True" in printed
    assert "padding ignored: True" in printed
    assert "weights of query 0, sequence 2:" in printed and "0.   0.  ]" in printed


@pytest.mark.parametrize("shape", [(4, 7, 16), (2, 3, 5, 8)])
def test_attention_equals_sdpa_on_other_shapes_and_a_random_mask(shape):
    torch.manual_seed(1)
    q, k, v = torch.randn(3, *shape).unbind(0)
    mask = torch.rand(shape[-2], shape[-2]) > 0.3
    mask[:, 0] = True  # every query sees at least one key
    assert torch.allclose(
        s.attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6
    )


def test_multihead_equals_nn_multihead_attention(page, printed):
    assert "equal to nn.MultiheadAttention: True" in printed
    torch.manual_seed(2)
    x = torch.randn(3, 6, 8)
    expected, _ = page.theirs(x, x, x, need_weights=False)
    assert torch.allclose(page.ours(x), expected, atol=1e-6)


def test_attention_needs_positions(printed):
    assert "no positions, output shuffled alike: True" in printed and "with positions: False" in printed
    codes = s.sinusoidal_positions(50, 16)
    assert codes.shape == (50, 16) and codes[0, 0::2].abs().max() == 0 and torch.all(codes[0, 1::2] == 1)


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


def test_the_toy_text_baseline_and_the_untrained_model(printed):
    bits = float(re.search(r"unigram baseline: ([\d.]+) bits", printed)[1])
    untrained = float(re.search(r"untrained: ([\d.]+) bits", printed)[1])
    log2_vocabulary = float(re.search(r"log2 of \d+ = ([\d.]+)", printed)[1])
    assert bits < log2_vocabulary and abs(untrained - log2_vocabulary) < 0.5


def test_the_causal_model_does_not_look_ahead():
    torch.manual_seed(0)
    model = s.CharTransformer(20, context=16, d_model=16, heads=2, depth=2).eval()
    ids = torch.randint(0, 20, (1, 16))
    changed = ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 20
    with torch.no_grad():
        assert torch.allclose(model(ids)[0, :10], model(changed)[0, :10], atol=1e-6)
        assert not torch.allclose(model(ids)[0, 10:], model(changed)[0, 10:], atol=1e-3)


def test_sampling_is_seeded_and_temperature_is_checked():
    torch.manual_seed(0)
    model = s.CharTransformer(10, context=8, d_model=8, heads=2, depth=1).eval()
    prompt = torch.tensor([1, 2, 3])
    one = s.sample(model, prompt, 20, 0.5, torch.Generator().manual_seed(3))
    two = s.sample(model, prompt, 20, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(one, two) and len(one) == 20  # longer than the context: the last 8 are read
    with pytest.raises(ValueError, match="temperature 0"):
        s.sample(model, prompt, 5, 0)


def test_bad_input_gets_a_clear_error(printed):
    errors = [line for line in printed.splitlines() if line.startswith(("ValueError:", "TypeError:"))]
    assert len(errors) == 4
    assert "a sequence of 40 tokens: this model reads at most 32" in errors[0]
    assert "token ids from 1 to 99: the vocabulary has ids 0 to" in errors[1]
    assert "mask (5, 4) does not fit scores (2, 5, 5) (... x queries x keys)" in errors[2]
    assert "characters not in the vocabulary: ['Ω']" in errors[3]
    with pytest.raises(TypeError, match="True/False"):
        s.attention(torch.ones(1, 2, 4), torch.ones(1, 2, 4), torch.ones(1, 2, 4), torch.ones(2, 2))
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        s.MultiHeadAttention(8, 3)
    with pytest.raises(FileNotFoundError, match="no .md files"):
        s.read_pages(DOCS / "records")


def test_the_exercises(printed):
    gru = re.search(
        r"GRU: the gradient at step 0 is ([\d.e+-]+) of step 99's\nupdate-gate bias 3: ([\d.e+-]+)", printed
    )
    assert float(gru[1]) < 1e-10 < 1e-4 < float(gru[2])
    rows = re.findall(r"scale ([\d.]+): largest weight per query \[\[([\d. ]+)\]\]", printed)
    unscaled, scaled = ([float(w) for w in weights.split()] for _, weights in rows)
    assert sum(unscaled) / 6 > 0.6 and max(scaled) < 0.5


# --- the recorded runs


@pytest.fixture(scope="module")
def record():
    return read_record("sequences")


def test_the_record_is_current(record):
    check_fresh(record)


def test_the_mnist_projects_reach_their_targets_and_the_cnn_stays_ahead(record):
    projects = record["metrics"]["mnist"]
    lstm, transformer = projects["LSTM over rows"], projects["transformer over patches"]
    for project in (lstm, transformer):
        assert len(project["runs"]) == 3
        assert project["mean"] == pytest.approx(sum(r["test_accuracy"] for r in project["runs"]) / 3)
        assert all(run["train_seconds"] < 180 for run in project["runs"])  # "about 2 minutes" each
    assert lstm["mean"] >= 0.985 and transformer["mean"] >= 0.98  # the aims
    cnn = read_record("cnn")["metrics"]["chapter"]["mean"]
    assert cnn > max(lstm["mean"], transformer["mean"])  # "the CNN is still the best fit"


def test_the_language_model_beats_the_baseline_and_its_samples_look_like_the_guide(record):
    lm = record["metrics"]["language_model"]
    assert lm["val_bits_per_character"] < lm["unigram_bits_per_character"] - 1.5
    assert lm["train_seconds"] < 180
    assert set(lm["samples"]) == {"0.5", "1.0"}
    assert all(text.startswith("## ") and len(text) == 303 for text in lm["samples"].values())
    words = lm["samples"]["0.5"].split()
    assert sum(word in {"the", "a", "and", "is", "of", "to", "in", "it"} for word in words) >= 3  # frequent words


def test_the_lstm_beats_the_mlp_and_the_transformer_only_matches_it(record):
    projects = record["metrics"]["mnist"]
    mlp = read_record("mnist")["metrics"]["chapter"]["test_accuracy_mean"]
    assert projects["LSTM over rows"]["mean"] > mlp + 0.005
    assert abs(projects["transformer over patches"]["mean"] - mlp) < 0.005
    lstm_time = sum(run["train_seconds"] for run in projects["LSTM over rows"]["runs"])
    transformer_time = sum(run["train_seconds"] for run in projects["transformer over patches"]["runs"])
    assert 1.5 < transformer_time / lstm_time < 3  # "twice the training time"
    assert projects["transformer over patches"]["parameters"] > projects["LSTM over rows"]["parameters"]


def test_unigram_bits_of_a_known_distribution():
    train = torch.tensor([0, 0, 1, 1])  # with add-one smoothing: p = 3/6, 3/6 over 2 symbols
    assert s.unigram_bits(train, torch.tensor([0, 1]), 2) == pytest.approx(1.0)
    assert s.unigram_bits(train, torch.tensor([0]), 4) == pytest.approx(-math.log2(3 / 8))
