"""Learning without labels and generating data: the code of docs/generative.md.

The building blocks, small enough to run on scikit-learn's 8 x 8 digits when the
page is built: an autoencoder with a bottleneck (and anomaly detection by its
reconstruction error), a variational autoencoder (the reparameterisation trick,
the ELBO, the closed-form KL against a Monte Carlo estimate), DDPM's noise
schedule (the closed-form forward noising against step-by-step noising), a
noise-predicting denoiser and its sampler, and the Fréchet distance between two
sets of features. Definitions are at module level; what the page runs is at the
end, at module level.
"""

# --8<-- [start:data]
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def digit_splits(seed=0):
    """scikit-learn's 1,797 digits (8 x 8 pixels, ink 0..16) as float tensors of
    64 pixels in [0, 1]: 60% to train, 20% to validate, 20% to test, each digit
    in the same share in each part (stratified)."""
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    y = torch.tensor(digits.target)
    index = np.arange(len(y))
    train, rest = train_test_split(
        index, test_size=0.4, stratify=digits.target, random_state=seed
    )
    validation, test = train_test_split(
        rest, test_size=0.5, stratify=digits.target[rest], random_state=seed
    )
    parts = {"train": train, "validation": validation, "test": test}
    return {name: (x[part], y[part]) for name, part in parts.items()}


# --8<-- [end:data]


# --8<-- [start:autoencoder]
from torch import nn


class Decoder(nn.Module):
    """Latent vectors of ``latent`` numbers to 64 pixel logits."""

    def __init__(self, latent, hidden=64, pixels=64):
        super().__init__()
        self.latent = latent
        self.layers = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, pixels)
        )

    def forward(self, z):
        if z.ndim != 2 or z.shape[1] != self.latent:
            raise ValueError(
                f"latent vectors of shape {tuple(z.shape)}: this decoder takes "
                f"(batch, {self.latent})"
            )
        return self.layers(z)


class Autoencoder(nn.Module):
    """64 pixels squeezed through ``bottleneck`` numbers and back."""

    def __init__(self, bottleneck, hidden=64, pixels=64):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, bottleneck)
        )
        self.decoder = Decoder(bottleneck, hidden, pixels)

    def forward(self, x):
        return torch.sigmoid(self.decoder(self.encoder(x)))


def reconstruction_errors(model, x):
    """Each image's mean squared error between its pixels and the model's
    reconstruction of them."""
    model.eval()
    with torch.no_grad():
        return ((model(x) - x) ** 2).mean(dim=1)


def train_unsupervised(model, loss_of, x, epochs=40, lr=3e-3, batch=64, seed=0):
    """Adam on ``loss_of(model, batch_of_x)``: no labels anywhere. Returns the
    model, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            loss = loss_of(model, x[order[start : start + batch]])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def autoencoder_loss(model, x):
    return ((model(x) - x) ** 2).mean()


# --8<-- [end:autoencoder]


# --8<-- [start:vae]
import operator

import torch.nn.functional as F


class VAE(nn.Module):
    """The encoder gives a Gaussian q(z | x) = N(mean, exp(log_var)) per image;
    the decoder gives each pixel's Bernoulli logit from a z drawn from it."""

    def __init__(self, latent, hidden=64, pixels=64):
        super().__init__()
        self.latent = latent
        self.encoder = nn.Sequential(
            nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent)
        )
        self.decoder = Decoder(latent, hidden, pixels)

    def encode(self, x):
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        return mean, log_var

    def forward(self, x, generator=None):
        mean, log_var = self.encode(x)
        z = reparameterise(mean, log_var, generator)
        return self.decoder(z), mean, log_var


def count_of(value, name, most=None):
    """``value`` as a positive int (at most ``most``), or a ValueError naming it;
    NumPy and one-element integer tensors count as ints."""
    try:
        whole = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        whole = None
    if whole is None or whole <= 0:
        raise ValueError(f"{name}={value!r}: need a whole number, at least 1")
    value = whole
    if most is not None and value > most:
        raise ValueError(f"{name}={value}: at most {most}")
    return value


def reparameterise(mean, log_var, generator=None):
    """z = mean + std * noise: a draw from N(mean, std^2) through which
    gradients reach mean and log_var (the noise alone is random)."""
    noise = torch.randn(mean.shape, generator=generator)
    return mean + torch.exp(0.5 * log_var) * noise


def kl_to_standard_normal(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) per row, in closed form."""
    return 0.5 * (mean**2 + log_var.exp() - 1 - log_var).sum(dim=1)


def kl_monte_carlo(mean, log_var, samples, generator=None):
    """The same KL as the mean of log q(z) - log p(z) over ``samples`` draws."""
    count_of(samples, "samples")
    q = torch.distributions.Normal(mean, torch.exp(0.5 * log_var))
    p = torch.distributions.Normal(0.0, 1.0)
    z = mean + q.scale * torch.randn((samples, *mean.shape), generator=generator)
    return (q.log_prob(z) - p.log_prob(z)).sum(dim=2).mean(dim=0)


def negative_elbo(model, x, generator=None):
    """Per image: reconstruction (Bernoulli negative log-likelihood of the ink,
    in nats, one draw of z) plus KL; the ELBO is minus their sum."""
    logits, mean, log_var = model(x, generator)
    reconstruction = F.binary_cross_entropy_with_logits(
        logits, x, reduction="none"
    ).sum(dim=1)
    return reconstruction, kl_to_standard_normal(mean, log_var)


def vae_loss(model, x):
    reconstruction, kl = negative_elbo(model, x)
    return (reconstruction + kl).mean()


# --8<-- [end:vae]


# --8<-- [start:contrastive]
def augment(x, generator=None):
    """Two different views of each 8 x 8 digit: shifted by up to one pixel in
    each direction, with a little noise; the digit stays the same."""
    images = x.view(-1, 1, 8, 8)
    padded = F.pad(images, (1, 1, 1, 1))
    shifts = torch.randint(0, 3, (len(x), 2), generator=generator)
    views = torch.stack(
        [
            padded[i, :, r : r + 8, c : c + 8]
            for i, (r, c) in enumerate(shifts.tolist())
        ]
    )
    noise = 0.1 * torch.randn(views.shape, generator=generator)
    return (views + noise).clamp(0, 1).view(-1, 64)


def nt_xent(z1, z2, temperature=0.5):
    """SimCLR's loss: each embedding's partner (the other view of its image)
    must be the most similar among the 2N - 1 others, a cross-entropy over
    cosine similarities divided by the temperature."""
    if z1.shape != z2.shape or len(z1) < 2:
        raise ValueError(
            f"views of shapes {tuple(z1.shape)} and {tuple(z2.shape)}: need two "
            "equal (batch, features) with a batch of at least 2"
        )
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))  # an embedding is not its own pair
    n = len(z1)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(similarity, partner)


def contrastive_loss(encoder, x, generator=None):
    return nt_xent(encoder(augment(x, generator)), encoder(augment(x, generator)))


# --8<-- [end:contrastive]


# --8<-- [start:schedule]
class NoiseSchedule:
    """DDPM's forward process, x_t = sqrt(1 - beta_t) x_(t-1) + sqrt(beta_t)
    noise from the image x_0, for t = 1 .. T, each beta_t in (0, 1). Indices
    here count from 0: betas[i] and alpha_bars[i] are DDPM's step i + 1."""

    def __init__(self, betas):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) == 0:
            raise ValueError(f"betas of shape {tuple(betas.shape)}: need 1-D, >= 1")
        outside = (~((betas > 0) & (betas < 1))).nonzero()  # NaN too
        if len(outside):
            first = outside[0, 0].item()
            raise ValueError(
                f"beta[{first}] = {betas[first].item():g}: every beta must lie in "
                "(0, 1), strictly"
            )
        self.betas = betas
        self.alpha_bars = torch.cumprod(1 - betas, dim=0)
        if self.alpha_bars[-1] < 1e-30:  # its square root must not underflow
            first = (self.alpha_bars < 1e-30).nonzero()[0, 0].item()
            raise ValueError(
                f"alpha_bar falls below 1e-30 at step {first}: these betas leave "
                "nothing of the image long before the end (and float32 cannot "
                "sample from there); use smaller betas or fewer steps"
            )

    def __len__(self):
        return len(self.betas)

    def noised(self, x0, t, noise):
        """x_t in one step (the closed form): sqrt(alpha_bar_t) x0 +
        sqrt(1 - alpha_bar_t) noise; ``t`` one step per row of x0."""
        alpha_bar = self.alpha_bars[t].to(x0.dtype).unsqueeze(-1)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise


def linear_schedule(steps, first=1e-3, last=0.2):
    """DDPM's linear betas (1e-4 to 0.02 over 1,000 steps there), for fewer
    steps: each step then adds more noise."""
    return NoiseSchedule(torch.linspace(first, last, steps))


def noise_step_by_step(schedule, x0, t, noises):
    """x_t by applying t + 1 single steps to x0, the i-th with noises[i]."""
    x = x0
    for step in range(t + 1):
        beta = schedule.betas[step].to(x0.dtype)
        x = (1 - beta).sqrt() * x + beta.sqrt() * noises[step]
    return x


def combined_noise(schedule, t, noises):
    """The one noise with which the closed form gives what t + 1 single steps
    give: their noises' weighted sum, divided by sqrt(1 - alpha_bar_t)."""
    betas = schedule.betas[: t + 1]
    keep = torch.cumprod((1 - betas).flip(0), dim=0).flip(0)  # prod over j >= i
    after = torch.cat([keep[1:], keep.new_ones(1)])  # prod over j > i
    weights = (betas * after).sqrt().to(noises.dtype)
    total = (weights.view(-1, *[1] * (noises.ndim - 1)) * noises[: t + 1]).sum(0)
    return total / (1 - schedule.alpha_bars[t]).sqrt().to(noises.dtype)


# --8<-- [end:schedule]


# --8<-- [start:denoiser]
import math


def time_features(t, size=32):
    """Each step number as sines and cosines of several frequencies, the way a
    transformer encodes positions."""
    frequencies = torch.exp(-math.log(1000) * torch.arange(size // 2) / (size // 2))
    angles = t.float().unsqueeze(1) * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Denoiser(nn.Module):
    """Predicts the noise in a noised image x_t from x_t and t."""

    def __init__(self, pixels=64, hidden=256, time_size=32):
        super().__init__()
        self.time_size = time_size
        self.layers = nn.Sequential(
            nn.Linear(pixels + time_size, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, pixels),
        )

    def forward(self, x, t):
        return self.layers(torch.cat([x, time_features(t, self.time_size)], 1))


def diffusion_loss(denoiser, schedule, x0, generator=None):
    """The noise-prediction objective: noise x0 (pixels in [-1, 1]) to a random
    step in one go, and score the predicted noise by mean squared error."""
    t = torch.randint(len(schedule), (len(x0),), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    return F.mse_loss(denoiser(schedule.noised(x0, t, noise), t), noise)


@torch.no_grad()
def sample(denoiser, schedule, count, steps=None, generator=None, pixels=64):
    """``count`` images of ``pixels`` pixels in [0, 1] from pure noise, by
    DDPM's reverse steps; ``steps`` fewer than the schedule's uses evenly spaced
    steps only, from the last (pure noise) down to the first."""
    count_of(count, "count")
    steps = count_of(
        len(schedule) if steps is None else steps, "steps", len(schedule)
    )
    used = torch.linspace(len(schedule) - 1, 0, steps).round().long().flip(0)
    alpha_bars = schedule.alpha_bars[used].tolist()  # float64, as Python floats
    denoiser.eval()
    x = torch.randn((count, pixels), generator=generator)
    for i in reversed(range(steps)):
        alpha_bar, before = alpha_bars[i], alpha_bars[i - 1] if i else 1.0
        predicted = denoiser(x, used[i].repeat(count))
        # the clean image this noise prediction implies, kept to the pixel range
        x0 = (x - math.sqrt(1 - alpha_bar) * predicted) / math.sqrt(alpha_bar)
        x0 = x0.clamp(-1, 1)
        if i == 0:
            x = x0
            break
        # one step back: q(x_before | x, x0), a Gaussian with DDPM's mean and
        # variance ("beta tilde"); beta is that of the jump over skipped steps
        beta = 1 - alpha_bar / before
        mean = (
            math.sqrt(before) * beta * x0 + math.sqrt(1 - beta) * (1 - before) * x
        ) / (1 - alpha_bar)
        variance = beta * (1 - before) / (1 - alpha_bar)
        x = mean + math.sqrt(variance) * torch.randn(x.shape, generator=generator)
    return (x + 1) / 2


# --8<-- [end:denoiser]


# --8<-- [start:flow-matching]
def flow_matching_loss(model, x1, generator=None):
    """Flow matching: on the straight line x_t = (1 - t) noise + t x1, the
    velocity is x1 - noise at every t; the model learns to predict it."""
    noise = torch.randn(x1.shape, generator=generator)
    t = torch.rand((len(x1), 1), generator=generator)
    x_t = (1 - t) * noise + t * x1
    # the time as a "step" from 0 to 1000 for the denoiser's time features
    predicted = model(x_t, (t[:, 0] * 1000).round().long())
    return F.mse_loss(predicted, x1 - noise)


@torch.no_grad()
def sample_flow(model, count, steps, generator=None, pixels=64):
    """``count`` images of ``pixels`` pixels in [0, 1]: noise moved along the
    predicted velocity from t = 0 to t = 1 in ``steps`` Euler steps."""
    count_of(count, "count")
    count_of(steps, "steps")
    model.eval()
    x = torch.randn((count, pixels), generator=generator)
    for i in range(steps):
        t = torch.full((count,), round(1000 * i / steps))
        x = x + model(x, t) / steps
    return ((x + 1) / 2).clamp(0, 1)


# --8<-- [end:flow-matching]


# --8<-- [start:gan]
def gan_networks(latent=16, hidden=128, pixels=64):
    """A generator (latent noise to pixels in [0, 1]) and a discriminator
    (pixels to one logit: real or generated)."""
    generator = nn.Sequential(
        nn.Linear(latent, hidden),
        nn.ReLU(),
        nn.Linear(hidden, pixels),
        nn.Sigmoid(),
    )
    discriminator = nn.Sequential(
        nn.Linear(pixels, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)
    )
    return generator, discriminator


def train_gan(
    generator,
    discriminator,
    x,
    epochs=60,
    lr=2e-3,
    batch=64,
    seed=0,
    saturating=False,
):
    """Two networks, two optimisers, one loop: the discriminator learns to tell
    real from generated, the generator to be called real (the "non-saturating"
    loss), or with ``saturating=True`` to make the discriminator's loss on its
    images high (the original minimax loss). Returns each epoch's mean losses
    (discriminator, generator)."""
    if len(x) < batch:
        raise ValueError(f"{len(x)} images: need at least one batch of {batch}")
    latent = generator[0].in_features
    random = torch.Generator().manual_seed(seed)
    options = {"lr": lr, "betas": (0.5, 0.999)}
    optimise_d = torch.optim.Adam(discriminator.parameters(), **options)
    optimise_g = torch.optim.Adam(generator.parameters(), **options)
    real_label, fake_label = torch.ones(batch, 1), torch.zeros(batch, 1)
    history = []
    for _ in range(epochs):
        order, losses = torch.randperm(len(x), generator=random), []
        for start in range(0, len(x) - batch + 1, batch):
            real = x[order[start : start + batch]]
            fake = generator(torch.randn((batch, latent), generator=random))
            # the discriminator: real images are 1, generated ones 0
            loss_d = F.binary_cross_entropy_with_logits(
                discriminator(real), real_label
            ) + F.binary_cross_entropy_with_logits(
                discriminator(fake.detach()), fake_label
            )
            optimise_d.zero_grad()
            loss_d.backward()
            optimise_d.step()
            # the generator: its images should be called real
            if saturating:  # minimise log(1 - D(G(z))): maximise D's loss
                loss_g = -F.binary_cross_entropy_with_logits(
                    discriminator(fake), fake_label
                )
            else:  # minimise -log D(G(z))
                loss_g = F.binary_cross_entropy_with_logits(
                    discriminator(fake), real_label
                )
            optimise_g.zero_grad()
            loss_g.backward()
            optimise_g.step()
            losses.append((loss_d.item(), loss_g.item()))
        history.append(torch.tensor(losses).mean(0).tolist())
    return history


# --8<-- [end:gan]


# --8<-- [start:frechet]
def frechet_distance(features_a, features_b):
    """||mean_a - mean_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)) between two
    sets of feature rows, each summarised by a Gaussian (as FID does)."""
    a, b = torch.as_tensor(features_a), torch.as_tensor(features_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feature sets of shapes {tuple(a.shape)} and {tuple(b.shape)}: "
            "need (rows, features) with the same number of features"
        )
    if min(len(a), len(b)) <= a.shape[1]:
        raise ValueError(
            f"{len(a)} and {len(b)} rows of {a.shape[1]} features: need more rows "
            "than features in each set, or the covariances are singular"
        )
    if not (a.isfinite().all() and b.isfinite().all()):
        raise ValueError("features with NaN or infinite values")
    a, b = a.double(), b.double()
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # tr((C_a C_b)^(1/2)) = sum of the square roots of the eigenvalues of the
    # symmetric S C_b S, with S = C_a^(1/2): no general matrix square root
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors * values.clamp(min=0).sqrt() @ vectors.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0)
    trace = cov_a.trace() + cov_b.trace() - 2 * middle.sqrt().sum()
    return ((a.mean(0) - b.mean(0)) ** 2).sum().item() + trace.item()


# --8<-- [end:frechet]


# --8<-- [start:classifier]
def train_classifier(x, y, epochs=40, lr=3e-3, batch=64, seed=0):
    """A small digit classifier, trained with the labels: its hidden layer gives
    the features on which samples are measured, its output their class."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            rows = order[start : start + batch]
            loss = F.cross_entropy(model(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def sample_report(classifier, real, images):
    """Fréchet distance on the classifier's hidden features, the share of the
    commonest predicted class (a collapse shows here) and the mean confidence."""
    for name, x in (("real", real), ("images", images)):
        if x.ndim != 2 or x.shape[1] != 64:
            raise ValueError(f"{name} of shape {tuple(x.shape)}: need (rows, 64)")
        if x.min() < 0 or x.max() > 1:
            raise ValueError(f"{name} has pixels outside [0, 1]: rescale them")
    features = classifier[:2]  # the hidden layer, after its ReLU
    probabilities = classifier(images).softmax(dim=1)
    counts = torch.bincount(probabilities.argmax(1), minlength=10)
    return {
        "frechet": frechet_distance(features(real), features(images)),
        "commonest": (counts.max() / len(images)).item(),
        "confidence": probabilities.max(1).values.mean().item(),
    }


# --8<-- [end:classifier]


# --8<-- [start:unet]
class TimeBlock(nn.Module):
    """Two 3 x 3 convolutions with group norm and SiLU, the step's features
    added in between, and a shortcut around both (a residual block)."""

    def __init__(self, in_channels, out_channels, time_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(time_channels, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm1 = nn.GroupNorm(8, out_channels)
        self.norm2 = nn.GroupNorm(8, out_channels)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x, time):
        h = F.silu(self.norm1(self.conv1(x))) + self.time(time)[:, :, None, None]
        return F.silu(self.norm2(self.conv2(h))) + self.shortcut(x)


class TinyUNet(nn.Module):
    """A small U-Net for 28 x 28 digits given as rows of 784 pixels: it works on
    14 x 14 (each 2 x 2 patch of pixels as 4 channels) and 7 x 7, and the way
    back up reads the way down's features of the same size (the skip
    connections), which carry the fine detail the 7 x 7 level lost."""

    def __init__(self, channels=32, time_size=64):
        super().__init__()
        c, time_channels = channels, 4 * channels
        self.time_size = time_size
        self.time = nn.Sequential(nn.Linear(time_size, time_channels), nn.SiLU())
        self.stem = nn.Conv2d(4, c, 3, padding=1)
        self.down = TimeBlock(c, c, time_channels)  # 14 x 14
        self.middle = TimeBlock(c, 2 * c, time_channels)  # 7 x 7
        self.up = TimeBlock(3 * c, c, time_channels)  # 14 x 14, with the skip
        self.out = nn.Conv2d(c, 4, 3, padding=1)

    def forward(self, x, t):
        if x.ndim != 2 or x.shape[1] != 784:
            raise ValueError(f"images of shape {tuple(x.shape)}: need (batch, 784)")
        patches = F.pixel_unshuffle(x.reshape(len(x), 1, 28, 28), 2)  # 4 x 14 x 14
        time = self.time(time_features(t, self.time_size))
        down = self.down(self.stem(patches), time)
        middle = self.middle(F.avg_pool2d(down, 2), time)
        up = F.interpolate(middle, scale_factor=2)  # back to 14 x 14
        up = self.up(torch.cat([up, down], dim=1), time)
        return F.pixel_shuffle(self.out(up), 2).reshape(len(x), 784)


# --8<-- [end:unet]


# --8<-- [start:views]
def contrastive_views(images, generator=None):
    """Two views of each MNIST digit (normalised rows of 784 pixels): the CNN
    chapter's random rotation, shift and zoom, stronger, then random erasing of
    a 10 x 10 square, so that no single stroke identifies an image."""
    from snippets.cnn import BLACK, random_affine

    views = []
    for _ in range(2):
        view = random_affine(
            images, degrees=20, shift=0.15, scale=(0.75, 1.15), generator=generator
        ).reshape(-1, 28, 28)
        corner = torch.randint(0, 19, (len(images), 2), generator=generator)
        rows = torch.arange(28)
        inside_r = (rows >= corner[:, :1]) & (rows < corner[:, :1] + 10)
        inside_c = (rows >= corner[:, 1:]) & (rows < corner[:, 1:] + 10)
        erase = inside_r[:, :, None] & inside_c[:, None, :]
        views.append(view.masked_fill(erase, BLACK).reshape(-1, 784))
    return views


# --8<-- [end:views]


# --8<-- [start:simclr]
class ContrastiveModel(nn.Module):
    """An encoder (the features a probe reads) and a small projection head (what
    NT-Xent compares); SimCLR found the loss is better applied after a head."""

    def __init__(self, encoder, features=128, projected=64):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(
            nn.Linear(features, features), nn.ReLU(), nn.Linear(features, projected)
        )

    def forward(self, x):
        return self.head(self.encoder(x))


def linear_probe(features, labels, weight_decay=1e-3, steps=500):
    """A logistic regression on frozen features, standardised (each feature's
    training mean and std): full-batch L-BFGS on the cross-entropy plus an L2
    penalty on the weights, from zero (the problem is convex). Returns a linear
    layer on the raw features, the standardisation folded into its weights."""
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    standardised = (features - mean) / std
    probe = nn.Linear(features.shape[1], 10)
    nn.init.zeros_(probe.weight)
    nn.init.zeros_(probe.bias)
    optimizer = torch.optim.LBFGS(
        probe.parameters(),
        max_iter=steps,
        tolerance_grad=1e-6,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(standardised), labels)
        loss = loss + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():  # w . (x - mean) / std + b = (w / std) . x + b'
        probe.weight /= std
        probe.bias -= probe.weight @ mean
    return probe.eval()


# --8<-- [end:simclr]


# What the page runs, in page order, at module level as on the page:
# `python -m snippets.generative` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:data-demo]
    splits = digit_splits()
    x_train, y_train = splits["train"]
    x_val, y_val = splits["validation"]
    print({name: tuple(x.shape) for name, (x, y) in splits.items()})
    # --8<-- [end:data-demo]

    # --8<-- [start:autoencoder-demo]
    autoencoders = {}
    for bottleneck in (2, 16):
        torch.manual_seed(0)
        model = Autoencoder(bottleneck)
        autoencoders[bottleneck] = train_unsupervised(
            model, autoencoder_loss, x_train
        )
    mean_image = x_train.mean(0)
    print(f"mean image: {((x_val - mean_image) ** 2).mean():.4f}")
    for bottleneck, model in autoencoders.items():
        error = reconstruction_errors(model, x_val).mean()
        print(f"bottleneck {bottleneck:2}: {error:.4f} validation MSE")
    # --8<-- [end:autoencoder-demo]

    # --8<-- [start:codes-figure]
    import matplotlib.pyplot as plt

    with torch.no_grad():
        codes = autoencoders[2].encoder(x_val)
    fig, ax = plt.subplots(figsize=(4, 2.8))
    points = ax.scatter(
        codes[:, 0], codes[:, 1], c=y_val, cmap="tab10", s=6, rasterized=True
    )  # the points as one image: lighter than 359 vector markers
    fig.colorbar(points, ax=ax, label="digit (never seen in training)")
    ax.set(title="2-D codes of the validation digits", xlabel="code 1")
    ax.set_ylabel("code 2")
    # --8<-- [end:codes-figure]

    # --8<-- [start:anomaly-demo]
    from sklearn.metrics import roc_auc_score

    # the same validation digits flipped top to bottom: same ink, odd shapes
    flipped = x_val.view(-1, 8, 8).flip(1).reshape(-1, 64)
    model = autoencoders[16]
    errors = torch.cat(
        [
            reconstruction_errors(model, x_val),
            reconstruction_errors(model, flipped),
        ]
    )
    is_anomaly = torch.cat([torch.zeros(len(x_val)), torch.ones(len(x_val))])
    auc = roc_auc_score(is_anomaly.numpy(), errors.numpy())
    print(f"ROC AUC, flipped digits by reconstruction error: {auc:.3f}")
    # --8<-- [end:anomaly-demo]

    # --8<-- [start:vae-demo]
    torch.manual_seed(0)
    vae = train_unsupervised(VAE(latent=8), vae_loss, x_train)
    with torch.no_grad():
        reconstruction, kl = negative_elbo(
            vae, x_val, torch.Generator().manual_seed(0)
        )
        mean, log_var = vae.encode(x_val[:4])
        closed = kl_to_standard_normal(mean, log_var)
        estimate = kl_monte_carlo(
            mean, log_var, 200_000, torch.Generator().manual_seed(0)
        )
    # the cross-entropy of grey targets cannot fall below their own entropy
    floor = F.binary_cross_entropy(x_val, x_val, reduction="none").sum(1)
    print(f"validation loss: {(reconstruction + kl).mean():.1f} nats per image")
    print(f"  reconstruction {reconstruction.mean():.1f} (its floor", end=" ")
    print(f"{floor.mean():.1f}), KL {kl.mean():.1f}")
    print("KL, closed form:", [round(v, 2) for v in closed.tolist()])
    print("KL, Monte Carlo:", [round(v, 2) for v in estimate.tolist()])
    # --8<-- [end:vae-demo]

    # --8<-- [start:contrastive-demo]
    from functools import partial

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def per_class(x, y, count):
        """The first ``count`` examples of each digit."""
        chosen = torch.cat([(y == c).nonzero()[:count, 0] for c in range(10)])
        return x[chosen], y[chosen]

    def probe_accuracy(features, count):
        """A linear classifier on ``features`` of ``count`` labelled digits of
        each class, scored on the validation digits."""
        x, y = per_class(x_train, y_train, count)
        with torch.no_grad():
            train, val = features(x).numpy(), features(x_val).numpy()
        # features on one scale: the penalty then treats each alike
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(train, y.numpy())
        return probe.score(val, y_val.numpy())

    encoders = {}
    for name, epochs in (("random encoder", 0), ("contrastive", 40)):
        torch.manual_seed(0)
        encoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64))
        generator = torch.Generator().manual_seed(0)
        train_unsupervised(
            encoder,
            partial(contrastive_loss, generator=generator),
            x_train,
            epochs=epochs,
            batch=128,
        )
        encoders[name] = encoder[:2]  # the probe reads the hidden layer
    print(f"{'features':16} {'10 per class':>13} {'100 per class':>14}")
    for name, features in {"pixels": lambda x: x, **encoders}.items():
        scores = [probe_accuracy(features, count) for count in (10, 100)]
        print(f"{name:16} {scores[0]:13.1%} {scores[1]:14.1%}")
    # --8<-- [end:contrastive-demo]

    # --8<-- [start:schedule-demo]
    schedule = linear_schedule(100)
    for t in (0, 49, 99):
        print(f"alpha_bar[{t:2}] = {schedule.alpha_bars[t]:.2e}")
    x0 = x_val[:8] * 2 - 1  # pixels in [-1, 1]
    noises = torch.randn(
        (100, *x0.shape), generator=torch.Generator().manual_seed(0)
    )
    for t in (0, 10, 99):
        stepped = noise_step_by_step(schedule, x0, t, noises)
        at_once = schedule.noised(
            x0, torch.full((8,), t), combined_noise(schedule, t, noises)
        )
        same = torch.allclose(stepped, at_once, atol=1e-5)
        print(f"t = {t:2}: the closed form gives the same x_t: {same}")
    # and the one noise is a standard normal draw, as the closed form needs
    combined = combined_noise(schedule, 99, noises)
    print(f"the one noise: mean {combined.mean():.3f}, std {combined.std():.3f}")
    # --8<-- [end:schedule-demo]

    # --8<-- [start:denoiser-demo]
    torch.manual_seed(0)
    denoiser = Denoiser()
    generator = torch.Generator().manual_seed(0)
    train_unsupervised(
        denoiser,
        lambda model, x: diffusion_loss(model, schedule, x * 2 - 1, generator),
        x_train,
        epochs=60,
        lr=1e-3,
    )
    samples = sample(
        denoiser, schedule, 360, generator=torch.Generator().manual_seed(1)
    )
    print(
        tuple(samples.shape),
        f"pixels in [{samples.min():.0f}, {samples.max():.0f}]",
    )
    # --8<-- [end:denoiser-demo]

    # --8<-- [start:unet-demo]
    torch.manual_seed(0)
    unet = TinyUNet(channels=32)
    noisy_digits = torch.randn(2, 784)
    print(f"{sum(p.numel() for p in unet.parameters()):,} parameters;", end=" ")
    print(
        "noise predicted:", tuple(unet(noisy_digits, torch.tensor([0, 199])).shape)
    )
    # --8<-- [end:unet-demo]

    # --8<-- [start:flow-matching-demo]
    torch.manual_seed(0)
    velocity = Denoiser()  # the same network, now predicting a velocity
    generator = torch.Generator().manual_seed(0)
    train_unsupervised(
        velocity,
        lambda model, x: flow_matching_loss(model, x * 2 - 1, generator),
        x_train,
        epochs=60,
        lr=1e-3,
    )
    flow_samples = sample_flow(
        velocity, 360, steps=20, generator=torch.Generator().manual_seed(1)
    )
    print(tuple(flow_samples.shape), "in 20 Euler steps")
    # --8<-- [end:flow-matching-demo]

    # --8<-- [start:gan-demo]
    torch.manual_seed(0)
    gan_generator, discriminator = gan_networks()
    history = train_gan(gan_generator, discriminator, x_train, epochs=100, lr=1e-3)
    for epoch in (0, 9, 49, 99):
        loss_d, loss_g = history[epoch]
        print(f"epoch {epoch + 1:3}: loss of D {loss_d:.2f}, of G {loss_g:.2f}")
    with torch.no_grad():
        latent = torch.randn((360, 16), generator=torch.Generator().manual_seed(1))
        gan_samples = gan_generator(latent)
    # --8<-- [end:gan-demo]

    # --8<-- [start:frechet-demo]
    x_test, y_test = splits["test"]
    print(
        "test against itself < 1e-9:", abs(frechet_distance(x_test, x_test)) < 1e-9
    )
    print(f"test against validation: {frechet_distance(x_test, x_val):.2f}")
    noise = torch.randn(x_val.shape, generator=torch.Generator().manual_seed(2))
    noisy = (x_val + 0.3 * noise).clamp(0, 1)
    print(f"test against noisy validation: {frechet_distance(x_test, noisy):.2f}")
    print(
        f"test against diffusion samples: {frechet_distance(x_test, samples):.2f}"
    )
    # --8<-- [end:frechet-demo]

    # --8<-- [start:classifier-demo]
    classifier = train_classifier(x_train, y_train)
    with torch.no_grad():
        accuracy = (classifier(x_val).argmax(1) == y_val).float().mean()
        vae_samples = torch.sigmoid(
            vae.decoder(
                torch.randn((360, 8), generator=torch.Generator().manual_seed(1))
            )
        )
    print(f"classifier: {accuracy:.1%} of the validation digits right")
    print(
        f"{'images':22} {'Fréchet':>8} {'commonest class':>16} {'confidence':>11}"
    )
    histograms = {}
    for name, images in {
        "real (validation)": x_val,
        "real, with noise": noisy,
        "VAE": vae_samples,
        "GAN": gan_samples,
        "diffusion (DDPM)": samples,
        "flow matching": flow_samples,
    }.items():
        report = sample_report(classifier, x_test, images)
        print(
            f"{name:22} {report['frechet']:8.2f} {report['commonest']:16.1%}"
            f" {report['confidence']:11.1%}"
        )
        with torch.no_grad():
            predicted = classifier(images).argmax(1)
        histograms[name] = torch.bincount(predicted, minlength=10).tolist()
    print(f"\n{'predicted digit':22}", "".join(f"{d:5}" for d in range(10)))
    for name, counts in histograms.items():
        print(f"{name:22}", "".join(f"{n:5}" for n in counts))
    # --8<-- [end:classifier-demo]

    # --8<-- [start:errors]
    import textwrap

    for bad in (
        lambda: autoencoders[2].decoder(torch.zeros(1, 16)),
        lambda: sample(denoiser, schedule, count=4, steps=0),
        lambda: sample(denoiser, schedule, count=-1),
        lambda: NoiseSchedule([0.1, 0.5, 1.0]),
        lambda: NoiseSchedule([0.9] * 400),
    ):
        try:
            bad()
        except ValueError as error:
            print(textwrap.fill(f"ValueError: {error}", 84))
    # --8<-- [end:errors]

    # --8<-- [start:exercise-fewer-steps]
    @torch.no_grad()
    def sample_ddim(denoiser, schedule, count, steps, generator=None):
        """DDIM with no fresh noise (Song et al., 2021): each step jumps to the
        next kept step's noise level along the guess and its implied noise."""
        used = torch.linspace(len(schedule) - 1, 0, steps).round().long().flip(0)
        alpha_bars = schedule.alpha_bars[used].tolist()
        x = torch.randn((count, 64), generator=generator)
        for i in reversed(range(steps)):
            alpha_bar, before = alpha_bars[i], alpha_bars[i - 1] if i else 1.0
            predicted = denoiser(x, used[i].repeat(count))
            x0 = (x - math.sqrt(1 - alpha_bar) * predicted) / math.sqrt(alpha_bar)
            x0 = x0.clamp(-1, 1)
            noise = (x - math.sqrt(alpha_bar) * x0) / math.sqrt(1 - alpha_bar)
            x = math.sqrt(before) * x0 + math.sqrt(1 - before) * noise
        return (x + 1) / 2

    for steps in (100, 20, 5):
        seed = torch.Generator().manual_seed(1)
        ddpm = frechet_distance(x_val, sample(denoiser, schedule, 360, steps, seed))
        seed = torch.Generator().manual_seed(1)
        ddim = frechet_distance(
            x_val, sample_ddim(denoiser, schedule, 360, steps, seed)
        )
        print(f"{steps:3} steps: {ddpm:.2f}, DDIM {ddim:.2f}")
    # --8<-- [end:exercise-fewer-steps]

    # --8<-- [start:exercise-flow-steps]
    for steps in (20, 5, 2):
        drawn = sample_flow(
            velocity, 360, steps, generator=torch.Generator().manual_seed(1)
        )
        print(f"{steps:3} Euler steps: {frechet_distance(x_val, drawn):.2f}")
    # --8<-- [end:exercise-flow-steps]

    # --8<-- [start:exercise-bottleneck]
    for bottleneck, model in autoencoders.items():
        errors = torch.cat(
            [
                reconstruction_errors(model, x_val),
                reconstruction_errors(model, flipped),
            ]
        )
        auc = roc_auc_score(is_anomaly.numpy(), errors.numpy())
        print(f"bottleneck {bottleneck:2}: ROC AUC {auc:.3f}")
    # --8<-- [end:exercise-bottleneck]
