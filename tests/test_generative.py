"""docs/generative.md: the digits' split, the autoencoders and anomaly detection, the VAE's reparameterisation and its
KL (closed form, Monte Carlo, torch.distributions), DDPM's schedule (closed form against step-by-step noising), the
denoiser's objective and the sampler, the Fréchet distance against scipy's matrix square root, and bad input.

The page's blocks run once here in page order (the ``page`` and ``printed`` fixtures of tests/conftest.py); the
tests that need other inputs call the module's functions."""

import re

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from conftest import (
    read_record_or_skip,
    report_without_record,
    test_the_page_prints_what_its_build_shows,  # noqa: F401 (a test)
)
from sklearn.metrics import roc_auc_score
from torch import nn

import site_tools.records as records
import snippets.generative as s

# --- the data


def test_the_splits_are_disjoint_stratified_and_of_the_printed_sizes(page, page_run):
    sizes = {name: len(x) for name, (x, y) in page.splits.items()}
    assert sizes == {"train": 1078, "validation": 359, "test": 360}
    assert "'train': (1078, 64)" in page_run.printed_by("data-demo")
    rows = {name: {tuple(r.tolist()) for r in x} for name, (x, y) in page.splits.items()}
    assert len(rows["train"] & rows["test"]) < 5  # the digits hold a few exact duplicates
    for x, y in page.splits.values():
        assert 0 <= x.min() and x.max() <= 1
        shares = torch.bincount(y, minlength=10) / len(y)
        assert shares.min() > 0.08 and shares.max() < 0.12


# --- autoencoders


def test_a_wider_bottleneck_rebuilds_better_and_both_beat_the_mean_image(page, page_run):
    mean_error = ((page.x_val - page.mean_image) ** 2).mean()
    two, sixteen = (s.reconstruction_errors(page.autoencoders[b], page.x_val).mean() for b in (2, 16))
    assert two < mean_error * 2 / 3 and sixteen < two / 3  # "more than a third", "by more than three"
    printed = page_run.printed_by("autoencoder-demo")
    assert f"bottleneck 16: {sixteen:.4f}" in printed and f"mean image: {mean_error:.4f}" in printed


def test_the_autoencoder_never_sees_a_label(monkeypatch):
    seen = []
    original = s.autoencoder_loss
    monkeypatch.setattr(s, "autoencoder_loss", lambda model, x: seen.append(x.shape) or original(model, x))
    x = torch.rand(100, 64)
    s.train_unsupervised(s.Autoencoder(2), s.autoencoder_loss, x, epochs=1, batch=40)
    assert seen == [(40, 64), (40, 64), (20, 64)]


def test_the_codes_figure_has_a_point_per_validation_digit(page):
    assert page.codes.shape == (359, 2)


def test_anomaly_detection_is_good_but_not_perfect(page, page_run):
    assert 0.75 < page.auc < 0.97  # "Not 1"
    assert f"{page.auc:.3f}" in page_run.printed_by("anomaly-demo")


def test_zero_one_and_eight_are_the_digits_least_changed_upside_down(page):
    normal, flipped = page.errors[: len(page.x_val)], page.errors[len(page.x_val) :]
    by_digit = {}
    for digit in range(10):
        chosen = page.y_val == digit
        labels = [0] * int(chosen.sum()) + [1] * int(chosen.sum())
        by_digit[digit] = roc_auc_score(labels, torch.cat([normal[chosen], flipped[chosen]]).numpy())
    assert set(sorted(by_digit, key=by_digit.get)[:3]) == {0, 1, 8}


def test_the_decoder_refuses_latents_of_the_wrong_size():
    decoder = s.Decoder(latent=4)
    assert decoder(torch.zeros(3, 4)).shape == (3, 64)
    for shape in [(3, 5), (4,), (2, 3, 4)]:
        with pytest.raises(ValueError, match=r"this decoder takes \(batch, 4\)"):
            decoder(torch.zeros(shape))


# --- the VAE


def test_reparameterisation_passes_gradients_to_the_mean_and_the_log_variance():
    mean = torch.tensor([[0.5, -1.0]], requires_grad=True)
    log_var = torch.tensor([[0.0, 1.0]], requires_grad=True)
    generator = torch.Generator().manual_seed(0)
    z = s.reparameterise(mean, log_var, generator)
    noise = torch.randn((1, 2), generator=torch.Generator().manual_seed(0))
    z.sum().backward()
    assert torch.allclose(mean.grad, torch.ones(1, 2))
    assert torch.allclose(log_var.grad, 0.5 * torch.exp(0.5 * log_var.detach()) * noise)


def test_the_closed_form_kl_equals_torch_distributions_and_is_zero_at_the_prior():
    mean, log_var = torch.randn(5, 3), torch.randn(5, 3)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * log_var))
    expected = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(s.kl_to_standard_normal(mean, log_var), expected, atol=1e-5)
    assert torch.equal(s.kl_to_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_the_monte_carlo_kl_agrees_with_the_closed_form_as_printed(page, page_run):
    assert torch.allclose(page.closed, page.estimate, atol=0.02)
    printed = page_run.printed_by("vae-demo")
    closed_line, estimate_line = re.findall(r"KL, (?:closed form|Monte Carlo): (.*)", printed)
    assert closed_line == estimate_line  # "agrees ... to the digits shown"


def test_the_loss_is_reconstruction_plus_kl_above_the_entropy_floor(page, page_run):
    reconstruction, kl, floor = page.reconstruction.mean(), page.kl.mean(), page.floor.mean()
    assert reconstruction > floor > 0 and kl > 0
    printed = page_run.printed_by("vae-demo")
    assert f"validation loss: {reconstruction + kl:.1f} nats" in printed and f"its floor {floor:.1f}" in printed
    grey = page.x_val
    entropy = -(grey * grey.clamp_min(1e-12).log() + (1 - grey) * (1 - grey).clamp_min(1e-12).log()).sum(1)
    assert torch.allclose(page.floor, entropy, atol=1e-3)


# --- contrastive learning


def nt_xent_by_loops(z1, z2, temperature):
    z = torch.cat([z1, z2])
    n, total = len(z1), 0.0
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        similarities = {j: F.cosine_similarity(z[i], z[j], dim=0) / temperature for j in range(2 * n) if j != i}
        denominator = sum(torch.exp(v) for v in similarities.values())
        total += -torch.log(torch.exp(similarities[partner]) / denominator)
    return total / (2 * n)


def test_nt_xent_equals_its_definition_computed_by_loops():
    z1, z2 = torch.randn(5, 3), torch.randn(5, 3)
    for temperature in (0.5, 0.1):
        expected = nt_xent_by_loops(z1, z2, temperature)
        assert torch.allclose(s.nt_xent(z1, z2, temperature), expected, atol=1e-5)


def test_nt_xent_is_lowest_when_the_views_agree():
    z = torch.randn(8, 4)
    assert s.nt_xent(z, z) < s.nt_xent(z, torch.randn(8, 4))


@pytest.mark.parametrize(("a", "b"), [((4, 3), (4, 5)), ((1, 3), (1, 3))])
def test_nt_xent_refuses_views_that_do_not_pair(a, b):
    with pytest.raises(ValueError, match="need two equal"):
        s.nt_xent(torch.randn(a), torch.randn(b))


def test_a_view_is_the_digit_shifted_by_at_most_one_pixel_with_noise():
    x = torch.zeros(200, 64)
    x[:, 3 * 8 + 3] = 1.0  # one pixel of ink at (3, 3)
    views = s.augment(x, torch.Generator().manual_seed(0)).view(-1, 8, 8)
    peaks = [divmod(v.argmax().item(), 8) for v in views]
    assert {p for p in peaks} == {(r, c) for r in (2, 3, 4) for c in (2, 3, 4)}
    assert views.min() >= 0 and views.max() <= 1


def test_the_probe_table_as_the_page_describes_it(page_run):
    printed = page_run.printed_by("contrastive-demo")
    rows = {
        name.strip(): (float(a), float(b))
        for name, a, b in re.findall(r"^(\D+?)\s+(\d+\.\d)%\s+(\d+\.\d)%$", printed, re.M)
    }
    assert set(rows) == {"pixels", "random encoder", "contrastive"}
    # "does not pay": with 10 labels the learned features are the worst; with 100 all within a point
    assert min(rows, key=lambda name: rows[name][0]) == "contrastive"
    hundred = [b for a, b in rows.values()]
    assert max(hundred) - min(hundred) < 1
    assert rows["contrastive"][1] <= rows["random encoder"][1]  # "no better than a random encoder"
    assert all(b > a for a, b in rows.values())  # more labels, a better probe


# --- the noise schedule


@pytest.mark.parametrize("betas", [[0.1, 0.0], [0.1, 1.0], [-0.1], [0.5, 1.5], [0.2, float("nan")]])
def test_a_schedule_refuses_betas_outside_zero_to_one(betas):
    with pytest.raises(ValueError, match=r"every beta must lie in \(0, 1\)"):
        s.NoiseSchedule(betas)


@pytest.mark.parametrize("betas", [[], [[0.1, 0.2]]])
def test_a_schedule_refuses_a_shape_that_is_not_a_list_of_betas(betas):
    with pytest.raises(ValueError, match="need 1-D"):
        s.NoiseSchedule(betas)


def test_alpha_bars_are_the_products_of_one_minus_beta():
    schedule = s.linear_schedule(10)
    expected = np.cumprod(1 - np.linspace(1e-3, 0.2, 10))
    assert np.allclose(schedule.alpha_bars.numpy(), expected)
    assert s.linear_schedule(100).alpha_bars[-1] < 1e-4  # "almost nothing of the image left"


def test_the_combined_noise_is_standard_normal_and_gives_the_step_by_step_result():
    schedule = s.linear_schedule(50)
    for t in (0, 7, 49):
        # its weights' squares sum to 1 - alpha_bar_t: the combined noise has variance 1
        unit = torch.eye(t + 1, dtype=torch.float64).unsqueeze(-1)  # noise i: 1 in row i
        weights = torch.stack([s.combined_noise(schedule, t, unit[:, i]) for i in range(t + 1)])
        assert torch.allclose((weights**2).sum(), torch.tensor(1.0, dtype=torch.float64))
    x0 = torch.rand(4, 64, dtype=torch.float64) * 2 - 1
    noises = torch.randn(50, 4, 64, dtype=torch.float64)
    stepped = s.noise_step_by_step(schedule, x0, 30, noises)
    at_once = schedule.noised(x0, torch.full((4,), 30), s.combined_noise(schedule, 30, noises))
    assert torch.allclose(stepped, at_once, atol=1e-12)


def test_step_by_step_noising_has_the_closed_forms_mean_and_variance():
    schedule, t = s.linear_schedule(100), 40
    x0 = torch.full((20_000, 1), 0.8, dtype=torch.float64)
    noises = torch.randn((t + 1, *x0.shape), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_t = s.noise_step_by_step(schedule, x0, t, noises)
    alpha_bar = schedule.alpha_bars[t]
    assert abs(x_t.mean() - alpha_bar.sqrt() * 0.8) < 0.02
    assert abs(x_t.var() - (1 - alpha_bar)) < 0.03


def test_the_page_shows_the_closed_form_agreeing(page_run):
    assert page_run.printed_by("schedule-demo").count("gives the same x_t: True") == 3


# --- the denoiser and the sampler


def test_predicting_no_noise_scores_about_one():
    class Zero(nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x)

    loss = s.diffusion_loss(Zero(), s.linear_schedule(100), torch.rand(4000, 64) * 2 - 1, torch.Generator())
    assert abs(loss.item() - 1) < 0.01


def test_the_sampler_visits_evenly_spaced_steps_backwards():
    calls = []

    class Recorder(nn.Module):
        def forward(self, x, t):
            calls.append(t[0].item())
            assert (t == t[0]).all() and t.dtype == torch.long
            return torch.zeros_like(x)

    schedule = s.linear_schedule(100)
    images = s.sample(Recorder(), schedule, 3, steps=5, generator=torch.Generator().manual_seed(0))
    assert calls == [99, 74, 50, 25, 0] and images.shape == (3, 64)
    assert 0 <= images.min() and images.max() <= 1
    calls.clear()
    s.sample(Recorder(), schedule, 1)
    assert calls == list(range(99, -1, -1))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"steps": 0}, "steps=0"),
        ({"steps": -3}, "steps=-3"),
        ({"steps": 101}, "steps=101"),
        ({"steps": 2.5}, "steps=2.5"),
        ({"count": 0}, "count=0"),
        ({"count": -1}, "count=-1"),
    ],
)
def test_the_sampler_refuses_no_steps_too_many_or_no_samples(options, message):
    arguments = {"count": 2} | options
    with pytest.raises(ValueError, match=message):
        s.sample(s.Denoiser(), s.linear_schedule(100), **arguments)


def test_diffusion_samples_lie_between_real_and_noisy_digits(page, page_run):
    assert page.samples.shape == (360, 64)
    real = s.frechet_distance(page.x_test, page.x_val)
    samples = s.frechet_distance(page.x_test, page.samples)
    noisy = s.frechet_distance(page.x_test, page.noisy)
    assert real < samples < noisy  # "in between"
    assert f"diffusion samples: {samples:.2f}" in page_run.printed_by("frechet-demo")


# --- flow matching and the GAN


def test_flow_matching_regresses_the_straight_lines_direction():
    class Zero(nn.Module):
        def forward(self, x, t):
            assert t.dtype == torch.long and 0 <= t.min() and t.max() <= 1000
            return torch.zeros_like(x)

    x1 = torch.rand(4000, 64) * 2 - 1
    loss = s.flow_matching_loss(Zero(), x1, torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx((x1**2).mean().item() + 1, abs=0.02)  # E|x1 - noise|^2


def test_euler_steps_follow_a_constant_velocity_exactly():
    class Constant(nn.Module):
        def forward(self, x, t):
            return torch.full_like(x, 0.25)

    for steps in (1, 7):
        images = s.sample_flow(Constant(), 5, steps, torch.Generator().manual_seed(0))
        noise = torch.randn((5, 64), generator=torch.Generator().manual_seed(0))
        assert torch.allclose(images, ((noise + 0.25 + 1) / 2).clamp(0, 1), atol=1e-6)


@pytest.mark.parametrize(("options", "message"), [({"steps": 0}, "steps=0"), ({"count": -2}, "count=-2")])
def test_the_flow_sampler_refuses_no_steps_or_no_samples(options, message):
    arguments = {"count": 2, "steps": 3} | options
    with pytest.raises(ValueError, match=message):
        s.sample_flow(s.Denoiser(), **arguments)


def test_the_page_draws_flow_samples(page):
    assert page.flow_samples.shape == (360, 64) and 0 <= page.flow_samples.min()


def test_the_gan_trains_both_networks_and_reports_each_epoch():
    torch.manual_seed(0)
    generator, discriminator = s.gan_networks(latent=4, hidden=8)
    before = [p.detach().clone() for p in (*generator.parameters(), *discriminator.parameters())]
    history = s.train_gan(generator, discriminator, torch.rand(40, 64), epochs=3, batch=16)
    after = list((*generator.parameters(), *discriminator.parameters()))
    assert len(history) == 3 and all(len(losses) == 2 for losses in history)
    assert all(not torch.equal(b, a) for b, a in zip(before, after))


def test_the_discriminators_step_leaves_the_generators_gradients_alone(monkeypatch):
    calls, unchanged = [], []
    original_step = torch.optim.Adam.step

    def gradients():
        return [None if p.grad is None else p.grad.clone() for p in generator.parameters()]

    def same(a, b):
        return all(
            (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y)) for x, y in zip(a, b)
        )

    def step(self, *args, **kwargs):
        # steps alternate D, G: at D's step, G's gradients are those G's last step left
        if len(calls) % 2 == 0:
            unchanged.append(same(gradients(), calls[-1] if calls else [None] * 4))
        calls.append(gradients())
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    torch.manual_seed(0)
    generator, discriminator = s.gan_networks(latent=4, hidden=8)
    s.train_gan(generator, discriminator, torch.rand(32, 64), epochs=2, batch=16)
    assert len(calls) == 8 and unchanged == [True] * 4


def test_the_gan_losses_printed(page, page_run):
    printed = page_run.printed_by("gan-demo")
    assert len(page.history) == 100 and printed.count("epoch") == 4
    loss_d, loss_g = page.history[99]
    assert f"loss of D {loss_d:.2f}, of G {loss_g:.2f}" in printed
    for which in (0, 1):  # "neither loss falls steadily"
        shown = [page.history[epoch][which] for epoch in (0, 9, 49, 99)]
        assert not all(a > b for a, b in zip(shown, shown[1:]))


# --- the Fréchet distance


def frechet_by_scipy(a, b):
    a, b = a.double().numpy(), b.double().numpy()
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)


def test_the_frechet_distance_equals_scipys_matrix_square_root():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(500, 6, generator=generator) @ torch.randn(6, 6, generator=generator)
    b = torch.randn(400, 6, generator=generator) * 2 + 1
    assert s.frechet_distance(a, b) == pytest.approx(frechet_by_scipy(a, b), rel=1e-6)
    assert s.frechet_distance(a, b) == pytest.approx(s.frechet_distance(b, a), rel=1e-9)


def test_the_frechet_distance_of_shifted_copies_is_the_squared_shift(page):
    x = page.x_test
    assert s.frechet_distance(x, x + 0.5) == pytest.approx(64 * 0.25, rel=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [((10, 3), (10, 4), "same number of features"), ((10,), (10,), "need"), ((3, 3), (5, 3), "more rows than")],
)
def test_the_frechet_distance_refuses_sets_it_cannot_compare(a, b, message):
    with pytest.raises(ValueError, match=message):
        s.frechet_distance(torch.zeros(a), torch.zeros(b))


# --- measuring samples


def test_the_classifier_is_accurate_and_the_report_detects_a_collapse(page, page_run):
    assert page.accuracy > 0.95
    assert f"classifier: {page.accuracy:.1%} of the validation digits right" in page_run.printed_by("classifier-demo")
    real = s.sample_report(page.classifier, page.x_test, page.x_val)
    assert real["commonest"] < 0.13 and real["confidence"] > 0.9 and real["frechet"] > 0  # "not 0"
    one_digit = page.x_val[page.y_val == 3][:1].repeat(100, 1)
    collapsed = s.sample_report(page.classifier, page.x_test, one_digit)
    assert collapsed["commonest"] == 1.0 and collapsed["frechet"] > 10 * real["frechet"]


def test_half_the_ddpm_samples_are_fours_and_sevens_as_the_histogram_shows(page, page_run):
    counts = page.histograms["diffusion (DDPM)"]
    assert sorted(range(10), key=counts.__getitem__)[-2:] in ([4, 7], [7, 4])
    assert 0.45 < (counts[4] + counts[7]) / sum(counts) < 0.55  # "half"
    printed = page_run.printed_by("classifier-demo")
    assert f"{'diffusion (DDPM)':22} " + "".join(f"{n:5}" for n in counts) in printed


def test_the_two_features_disagree_about_the_diffusion_samples_as_the_page_says(page, page_run):
    printed = page_run.printed_by("classifier-demo")
    rows = dict(re.findall(r"^(\S.*?)\s+(\d+\.\d\d)\s", printed, re.M))
    distances = {name: float(value) for name, value in rows.items()}
    assert len(distances) == 6
    assert max(distances, key=distances.get) == "diffusion (DDPM)"  # "the farthest"
    assert min(distances, key=distances.get) == "real (validation)"
    assert s.frechet_distance(page.x_test, page.samples) < s.frechet_distance(page.x_test, page.noisy)


# --- bad input and the exercise


def test_bad_input_gets_a_clear_error(page_run):
    printed = page_run.printed_by("errors")
    assert printed.count("ValueError: ") == 5
    for words in (
        "shape (1, 16)",
        "takes (batch, 2)",
        "steps=0",
        "count=-1",
        "beta[2] = 1",
        "falls below 1e-30 at step",
    ):
        assert words in printed


def test_the_exercise_fewer_steps_are_worse_past_a_point(page_run):
    printed = page_run.printed_by("exercise-fewer-steps")
    distances = [float(d) for d in re.findall(r"steps: (\d+\.\d+)", printed)]
    assert len(distances) == 3  # "twenty as good as a hundred, five worse"
    assert abs(distances[1] - distances[0]) < 0.1 * distances[0] and distances[2] > 1.2 * max(distances[:2])
    ddim = [float(d) for d in re.findall(r"DDIM (\d+\.\d+)", printed)]
    assert len(ddim) == 3 and ddim[2] < 1.1 * distances[0]  # "DDIM's five steps as good as a hundred"


def test_the_exercise_flow_matching_loses_less_with_fewer_steps(page_run):
    ddpm = [float(d) for d in re.findall(r"steps: (\d+\.\d+)", page_run.printed_by("exercise-fewer-steps"))]
    flow = [float(d) for d in re.findall(r"Euler steps: (\d+\.\d+)", page_run.printed_by("exercise-flow-steps"))]
    assert len(ddpm) == len(flow) == 3 and max(flow) < min(ddpm)  # "closer with every number of steps"
    assert flow[1] / flow[0] < 1.2 and ddpm[2] / ddpm[1] > 1.4  # "less than a fifth", "almost a half"


def test_the_exercise_the_wider_bottleneck_finds_flipped_digits_better(page_run):
    aucs = [float(a) for a in re.findall(r"ROC AUC (\d\.\d+)", page_run.printed_by("exercise-bottleneck"))]
    assert len(aucs) == 2 and aucs[1] > aucs[0]


# --- what the review asked for: oracles, directions and bad input


class GaussianOracle(nn.Module):
    """The exact noise prediction E[noise | x_t] for data drawn from N(mean, std^2) in every pixel."""

    def __init__(self, schedule, mean, std):
        super().__init__()
        self.alpha_bars, self.mean, self.std = schedule.alpha_bars.float(), mean, std

    def forward(self, x, t):
        alpha_bar = self.alpha_bars[t].unsqueeze(1)
        variance = alpha_bar * self.std**2 + 1 - alpha_bar  # of x_t
        return (1 - alpha_bar).sqrt() * (x - alpha_bar.sqrt() * self.mean) / variance


def test_the_sampler_with_the_exact_denoiser_gets_the_mean_and_narrows_with_fewer_steps():
    """With the exact noise prediction for N(0.2, 0.3^2) pixels, the mean comes out right; the spread is narrower
    than the data's (the Gaussian step with DDPM's "beta tilde" variance keeps one guess of x0), more so with fewer
    steps, and never above it: a sampler with the larger variance beta (spread 0.31, 0.36) fails this."""
    schedule = s.linear_schedule(100)
    oracle = GaussianOracle(schedule, mean=0.2, std=0.3)  # in [-1, 1] pixels, well inside the clip
    spreads = []
    for steps in (100, 20, 5):
        x = s.sample(oracle, schedule, 4000, steps, torch.Generator().manual_seed(0)) * 2 - 1
        assert abs(x.mean().item() - 0.2) < 0.02
        spreads.append(x.std().item())
    assert 0.25 < spreads[0] < 0.3 and spreads[0] > spreads[1] > spreads[2]


def test_one_sampling_step_starts_from_the_last_step():
    calls = []

    class Recorder(nn.Module):
        def forward(self, x, t):
            calls.append(t[0].item())
            return torch.zeros_like(x)

    s.sample(Recorder(), s.linear_schedule(100), 2, steps=1)
    assert calls == [99]


@pytest.mark.parametrize("steps", [400, 100])  # alpha_bar underflows to 0; 1e-100, its root 0 in float32
def test_a_schedule_that_leaves_nothing_long_before_the_end_is_refused(steps):
    with pytest.raises(ValueError, match="falls below 1e-30 at step"):
        s.NoiseSchedule([0.9] * steps)
    schedule = s.NoiseSchedule([0.9] * 25)  # alpha_bar 1e-25: sampled without NaN
    oracle = GaussianOracle(schedule, mean=0.2, std=0.3)
    assert s.sample(oracle, schedule, 10).isfinite().all()


def test_flow_sampling_with_the_exact_velocity_draws_the_data_distribution():
    mean, std = 0.5, 0.3

    class ExactVelocity(nn.Module):
        """E[x1 - x0 | x_t] for x0 ~ N(0, 1), x1 ~ N(mean, std^2), x_t = (1 - t) x0 + t x1."""

        def forward(self, x, step):
            t = (step.float() / 1000).unsqueeze(1)
            variance = (1 - t) ** 2 + t**2 * std**2
            covariance = t * std**2 - (1 - t)  # of x1 - x0 with x_t
            return mean + covariance / variance * (x - t * mean)

    images = s.sample_flow(ExactVelocity(), 4000, 100, torch.Generator().manual_seed(0))
    x = images * 2 - 1  # mean 0.5 +- 0.3 stays inside [-1, 1]: the clamp does not touch it
    assert abs(x.mean().item() - mean) < 0.02 and abs(x.std().item() - std) < 0.02


def test_the_generators_step_makes_the_discriminator_call_its_images_real():
    x = torch.rand(64, 64)
    for saturating in (False, True):
        torch.manual_seed(0)
        generator, discriminator = s.gan_networks()
        before = generator.state_dict()
        before = {name: value.clone() for name, value in before.items()}
        z = torch.randn(64, 16, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            score_before = discriminator(generator(z)).mean()
        # one epoch of one batch; then undo the discriminator's step to isolate G's
        d_state = {name: value.clone() for name, value in discriminator.state_dict().items()}
        s.train_gan(generator, discriminator, x, epochs=1, lr=1e-2, batch=64, seed=0, saturating=saturating)
        discriminator.load_state_dict(d_state)
        with torch.no_grad():
            score_after = discriminator(generator(z)).mean()
        assert score_after > score_before, saturating
        assert any((before[n] != v).any() for n, v in generator.state_dict().items())


def test_the_saturating_loss_is_minus_the_discriminators_loss_on_fakes(monkeypatch):
    seen = []
    original = F.binary_cross_entropy_with_logits

    def spy(logits, target, *args, **kwargs):
        loss = original(logits, target, *args, **kwargs)
        seen.append((target.mean().item(), loss.item()))
        return loss

    monkeypatch.setattr(s.F, "binary_cross_entropy_with_logits", spy)
    torch.manual_seed(0)
    generator, discriminator = s.gan_networks()
    history = s.train_gan(generator, discriminator, torch.rand(64, 64), epochs=1, batch=64, saturating=True)
    # per step: D on real (target 1), D on fake (0), then G's: on fake, target 0, negated
    assert [target for target, _ in seen] == [1.0, 0.0, 0.0]
    assert history[0][1] == pytest.approx(-seen[2][1], rel=1e-5)


def test_the_gan_refuses_fewer_images_than_a_batch():
    generator, discriminator = s.gan_networks()
    with pytest.raises(ValueError, match="need at least one batch of 64"):
        s.train_gan(generator, discriminator, torch.rand(10, 64), epochs=1)


def test_the_frechet_distance_refuses_nan():
    a = torch.randn(100, 3)
    a[5, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        s.frechet_distance(a, torch.randn(100, 3))


@pytest.mark.parametrize(
    ("images", "message"),
    [(torch.rand(50, 8, 8), "need \\(rows, 64\\)"), (torch.rand(100, 64) * 2 - 1, "outside \\[0, 1\\]")],
)
def test_the_sample_report_refuses_images_of_the_wrong_shape_or_range(page, images, message):
    with pytest.raises(ValueError, match=message):
        s.sample_report(page.classifier, page.x_test, images)


def test_the_monte_carlo_kl_refuses_no_samples():
    with pytest.raises(ValueError, match="samples=0"):
        s.kl_monte_carlo(torch.zeros(1, 2), torch.zeros(1, 2), 0)


def test_the_elbo_sums_over_pixels():
    torch.manual_seed(0)
    vae = s.VAE(latent=2)
    x = torch.rand(3, 64)
    reconstruction, kl = s.negative_elbo(vae, x, torch.Generator().manual_seed(0))
    logits, mean, log_var = vae(x, torch.Generator().manual_seed(0))
    per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    assert torch.allclose(reconstruction, per_pixel.sum(1)) and kl.shape == (3,)


# --- the MNIST pieces (run small here; the recorded run: tests/benchmarks/test_generative_benchmark.py)


def test_the_unet_keeps_the_shape_and_depends_on_the_step():
    torch.manual_seed(0)
    unet = s.TinyUNet(channels=8, time_size=16)
    x = torch.randn(3, 784)
    out = unet(x, torch.tensor([0, 50, 199]))
    assert out.shape == (3, 784)
    assert not torch.allclose(unet(x[:1], torch.tensor([0])), unet(x[:1], torch.tensor([199])))
    with pytest.raises(ValueError, match="need \\(batch, 784\\)"):
        unet(torch.randn(3, 28, 28), torch.tensor([0, 0, 0]))


def test_the_unets_up_block_reads_the_down_blocks_features_through_the_skip():
    torch.manual_seed(0)
    unet = s.TinyUNet(channels=8, time_size=16).eval()
    seen = {}
    unet.down.register_forward_hook(lambda module, args, out: seen.update(down=out))
    unet.up.register_forward_pre_hook(lambda module, args: seen.update(up_input=args[0]))
    with torch.no_grad():
        unet(torch.randn(2, 784), torch.tensor([3, 150]))
    assert seen["down"].shape == (2, 8, 14, 14) and seen["up_input"].shape == (2, 24, 14, 14)
    assert torch.equal(seen["up_input"][:, 16:], seen["down"])  # the last 8 channels: the skip


def test_contrastive_views_differ_keep_the_shape_and_erase_a_square():
    from snippets.cnn import BLACK

    images = torch.full((4, 784), 2.0)  # all ink, normalised
    first, second = s.contrastive_views(images, torch.Generator().manual_seed(0))
    assert first.shape == second.shape == (4, 784) and not torch.equal(first, second)
    erased = (first.reshape(4, 28, 28) == BLACK).sum(dim=(1, 2))
    assert (erased >= 100).all()  # the 10 x 10 square, at least


def test_the_linear_probe_equals_scikit_learns_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 10
    features = torch.randn(300, 12, generator=generator) * torch.linspace(0.5, 5, 12) + 3 * F.one_hot(labels, 12)
    decay = 1e-2
    probe = s.linear_probe(features, labels, weight_decay=decay)
    # ours: mean cross-entropy + decay * |W|^2 on standardised features; scikit-learn: C * sum + |W|^2 / 2
    standardised = (features - features.mean(0)) / features.std(0)
    reference = LogisticRegression(C=1 / (2 * decay * len(labels)), tol=1e-10, max_iter=10_000)
    reference.fit(standardised.double().numpy(), labels.numpy())
    expected = reference.predict_proba(standardised.double().numpy())
    with torch.no_grad():
        ours = probe(features).softmax(1).double().numpy()
    assert np.abs(ours - expected).max() < 2e-3


def test_count_of_takes_numpy_and_tensor_integers_and_refuses_the_rest():
    assert s.count_of(np.int64(3), "steps") == 3 and s.count_of(torch.tensor(4), "steps") == 4
    for bad in (True, 0, -2, 2.0, "3", None):
        with pytest.raises(ValueError, match="need a whole number"):
            s.count_of(bad, "steps")


def test_the_linear_probe_separates_separable_features():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 10
    features = F.one_hot(labels, 10).float() * 3 + 0.1 * torch.randn(200, 10, generator=generator)
    probe = s.linear_probe(features, labels)
    assert (probe(features).argmax(1) == labels).all()


# --- the recorded run: python -m benchmarks.generative --data-root data --record


@pytest.fixture(scope="module")
def record():
    return read_record_or_skip("generative")


def test_the_record_is_current(record):
    records.check_fresh(record)


REPORT = "benchmarks/reports/generative.py"


def test_the_page_says_not_recorded_yet_while_the_record_is_missing(monkeypatch):
    outputs = report_without_record(monkeypatch, REPORT)
    assert len(outputs) == 7 and all(
        "Not recorded yet" in out and "python -m benchmarks.generative" in out for out in outputs
    )


def mean(values):
    return sum(values) / len(values)


def bench_decays():
    import benchmarks.generative

    return benchmarks.generative.PROBE_WEIGHT_DECAYS


def test_the_record_supports_what_the_page_says(record):
    metrics = record["metrics"]
    assert metrics["threads"] == 2 and metrics["total_seconds"] < 45 * 60  # "about 35 minutes", at most ~40
    assert metrics["classifier"]["validation_accuracy"] > 0.98
    encoders = metrics["autoencoders"]
    baseline = encoders["mean_image_error"]
    two, sixteen = encoders["bottleneck 2"], encoders["bottleneck 16"]
    assert len(two) == len(sixteen) == 5
    assert all(run["error"] < baseline * 2 / 3 for run in two)  # "take a third off"
    assert all(run["error"] < baseline / 5 for run in sixteen)  # "more than four fifths"
    for runs in (two, sixteen):  # "the seeds agree to a few percent"
        errors = [run["error"] for run in runs]
        assert (max(errors) - min(errors)) / mean(errors) < 0.05
    assert all(run["auc"]["shifted"] > 0.92 for run in two + sixteen)  # "above 0.92 with either"
    assert all(run["floor"] == pytest.approx(46.0, abs=0.05) for run in metrics["vae"])  # the floor printed
    assert min(run["auc"]["flipped"] for run in sixteen) > max(run["auc"]["flipped"] for run in two)
    # contrastive: the labels win on average at each count; ranges overlap at 10 and all, not at 100
    runs = metrics["contrastive"]
    assert len(runs) == 5 and 50 < mean([run["pretraining_seconds"] for run in runs]) < 58  # "fifty-four seconds"
    for labels, gap, overlap in (("10", (0.02, 0.03), True), ("100", (0.01, 0.017), False), ("all", (0, 0.004), True)):
        probe = [run["labels"][labels]["probe_test"] for run in runs]
        supervised = [run["labels"][labels]["supervised_test"] for run in runs]
        assert gap[0] < mean(supervised) - mean(probe) < gap[1]  # "two and a half, one and a third, a fifth"
        assert (max(probe) >= min(supervised)) == overlap
    assert 0.895 <= mean([run["labels"]["10"]["probe_test"] for run in runs]) < 0.91  # "90%"
    for run in runs:  # the weight decay with the best validation accuracy, of those tried
        for scores in run["labels"].values():
            tried = {float(decay): value for decay, value in scores["probe_tried"].items()}
            assert scores["probe_validation"] == max(tried.values()) == tried[scores["probe_weight_decay"]]
            assert max(tried.values()) - min(tried.values()) < 0.02  # "within two points"
    chosen = {labels: [run["labels"][labels]["probe_weight_decay"] for run in runs] for labels in ("10", "all")}
    assert chosen["10"].count(max(bench_decays())) == 4 and chosen["all"] == [min(bench_decays())] * 5
    # GAN: the minimax loss fails on every seed, and the metric sees it
    minimax, fixed = metrics["gan"]["minimax loss"], metrics["gan"]["non-saturating loss"]
    assert min(r["validation"]["frechet"] for r in minimax) > max(r["validation"]["frechet"] for r in fixed)
    assert mean([r["validation"]["commonest"] for r in minimax]) > 1.5 * mean(
        [r["validation"]["commonest"] for r in fixed]
    )
    assert all(r["losses"][-1][0] < 0.01 and -0.01 < r["losses"][-1][1] <= 0 for r in minimax)  # D wins
    assert all(0.22 < r["validation"]["commonest"] < 0.4 for r in minimax)  # "a quarter to two fifths"
    assert sum(r["validation"]["class_shares"][1] == 0 for r in minimax) == 3  # "not one 1, on three seeds"
    assert all(0.9 < r["losses"][-1][0] < 1.1 and 1.6 < r["losses"][-1][1] < 1.8 for r in fixed)  # "near 1, near 1.7"
    assert all(min(r["validation"]["class_shares"]) > 0.02 for r in fixed)  # "of every class"
    # diffusion: the same steps; flow matching closer than DDPM on every seed
    ddpm, flow = metrics["diffusion"]["DDPM"], metrics["diffusion"]["flow matching"]
    assert all(f["samples"]["frechet"] < d["samples"]["frechet"] for d, f in zip(ddpm, flow))
    assert 75 < mean([r["seconds"] for r in ddpm + flow]) < 95  # "84 seconds"
    # the sample-quality table: the order the page gives, and the real images' floor
    table = {"real": metrics["real"], "VAE": metrics["vae"], "minimax": minimax, "fixed": fixed}
    table |= {"DDPM": ddpm, "flow": flow}
    distance = {name: mean([r["samples"]["frechet"] for r in runs]) for name, runs in table.items()}
    assert sorted(distance, key=distance.get) == ["real", "fixed", "flow", "VAE", "DDPM", "minimax"]
    assert 5 < distance["real"] < 7.5  # "about 6"
    real = metrics["real"]
    assert mean([r["samples"]["commonest"] for r in real]) < 0.13  # "about a tenth"
    assert mean([r["samples"]["confidence"] for r in real]) > 0.985  # "99%"
    assert 0.3 < mean([r["samples"]["commonest"] for r in minimax]) < 0.35  # "a third"
    assert 0.25 < mean([r["samples"]["commonest"] for r in ddpm]) < 0.3  # "a quarter"
    assert all(20 < r["seconds"] < 40 for r in metrics["vae"] + minimax + fixed)  # "half a minute"
