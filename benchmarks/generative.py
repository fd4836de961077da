"""The generative chapter's recorded runs on MNIST (a script, not a test).

    python -m benchmarks.generative --data-root data            # print them
    python -m benchmarks.generative --data-root data --record   # and record them

``--record`` writes docs/records/generative.json. The 60,000 training images
are split into 55,000 to train on and 5,000 to validate (the MNIST chapter's
seeded split); the 10,000 test images are read at the end: as the reference
set of the sample-quality table, and once by each probe and supervised model.
Pixels are in [0, 1] for the generative models ([-1, 1] inside diffusion and
flow matching), normalised as in the MNIST chapter for the CNNs. In order:

1. the measuring classifier: the CNN chapter's network with a hidden layer of
   128 (build_cnn), trained with labels; its hidden layer gives the features of
   the Fréchet distance, its output the class of each sample;
2. autoencoders with bottlenecks of 2 and 16 (5 seeds each): validation
   reconstruction error, against predicting the mean image; anomaly detection
   (ROC AUC) of the validation digits against the same digits flipped top to
   bottom and shifted by 4 pixels; seed 0's codes and reconstructions;
3. the VAE (5 seeds): validation ELBO, samples, and a latent interpolation;
4. contrastive learning (5 seeds, each its own pretraining and label draw):
   the encoder trained without labels, then a linear probe with 10, 100 and
   all labels per class, against the same network trained with those labels
   (its stopping point chosen on the validation labels); each on the test set;
5. GAN: two recipes (5 seeds each), compared on the validation images;
6. DDPM with a small U-Net, and flow matching with the same U-Net and the same
   number of training steps and network evaluations per sample (5 seeds);
7. the sample-quality table: each model's samples (1,000 per seed) against the
   test images: Fréchet distance on the classifier's features, the share of
   the commonest predicted class and the mean confidence; and the same for
   1,000 real validation images per seed.

--record refuses to start above a load average of 0.5 (benchmarks.cnn's guard)
and uses 2 threads. A seed's runs use no other random numbers than their own.
"""

import argparse
import base64
import os
import time

import snippets.generative as g
import snippets.mnist as m
import torch
import torch.nn.functional as F
from site_tools.records import write_record
from sklearn.metrics import roc_auc_score
from snippets.cnn import build_cnn, random_affine
from snippets.generative import (
    VAE,
    Autoencoder,
    ContrastiveModel,
    TinyUNet,
    autoencoder_loss,
    contrastive_views,
    diffusion_loss,
    flow_matching_loss,
    frechet_distance,
    gan_networks,
    linear_probe,
    linear_schedule,
    negative_elbo,
    nt_xent,
    reconstruction_errors,
    sample,
    sample_flow,
    train_gan,
    train_unsupervised,
    vae_loss,
)

from benchmarks.cnn import IDLE_LOAD, refuse_a_busy_machine

PRODUCERS = [g.__file__, __file__]
VAL_SIZE, SPLIT_SEED = 5000, 0  # the MNIST chapter's validation split
SEEDS = (0, 1, 2, 3, 4)
SAMPLES = 1000  # per model and seed, for the sample-quality table
GRID = 32  # images of each model kept in the record for the figures
CLASSIFIER = {"hidden": 128, "epochs": 3, "batch_size": 128, "lr": 1e-3}
AUTOENCODER = {"hidden": 512, "epochs": 5, "batch_size": 128, "lr": 1e-3}
BOTTLENECKS = (2, 16)
SHIFT = 4  # pixels, for the shifted digits of anomaly detection
PROBE_WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2)  # the probe's, chosen on validation
VAE_RECIPE = {"latent": 16, "hidden": 512, "epochs": 10, "batch_size": 128}
CONTRASTIVE = {"steps": 400, "batch_size": 256, "lr": 2e-3, "temperature": 0.2}
LABELS_PER_CLASS = (10, 100, None)  # None: every training label
SUPERVISED = {"steps": 400, "batch_size": 128, "lr": 1e-3, "check_every": 50}
GAN_RECIPES = {  # the generator's loss: the original minimax one, and the fix
    "minimax loss": {"lr": 2e-3, "epochs": 8, "saturating": True},
    "non-saturating loss": {"lr": 2e-3, "epochs": 8, "saturating": False},
}
GAN = {"latent": 64, "hidden": 256, "batch_size": 64}
DIFFUSION = {"channels": 32, "epochs": 2, "batch_size": 64, "lr": 2e-3}
SCHEDULE = {"steps": 200, "first": 5e-4, "last": 0.1}
SAMPLING_STEPS = 50  # network evaluations per sample, DDPM and flow matching


def mnist_splits(root):
    """Training, validation and test images as rows of 784 normalised pixels,
    and their labels."""
    images, labels = m.preload(root, train=True)
    train, val = m.split_indices(len(images), VAL_SIZE, SPLIT_SEED)
    test_images, test_labels = m.preload(root, train=False)
    return {
        "train": (images[train], labels[train]),
        "validation": (images[val], labels[val]),
        "test": (test_images, test_labels),
    }


def to_pixels(normalised):
    """Normalised images back to pixels in [0, 1]."""
    return (normalised * m.STD + m.MEAN).clamp(0, 1)


def to_normalised(pixels):
    return (pixels - m.MEAN) / m.STD


def image_bytes(pixels):
    """Images (rows of 784 pixels in [0, 1]) as base64 of one byte per pixel."""
    levels = (pixels.clamp(0, 1) * 255).round().to(torch.uint8)
    return base64.b64encode(levels.numpy().tobytes()).decode("ascii")


@torch.no_grad()
def in_batches(function, x, size=2000):
    return torch.cat([function(x[i : i + size]) for i in range(0, len(x), size)])


def train_classifier(train, val, seed=0, config=CLASSIFIER):
    """The measuring classifier, and its validation accuracy."""
    torch.manual_seed(seed)
    model = build_cnn(hidden=config["hidden"])
    images, labels = train
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    order_generator = torch.Generator().manual_seed(seed)
    size = config["batch_size"]
    for _ in range(config["epochs"]):
        model.train()
        order = torch.randperm(len(images), generator=order_generator)
        for start in range(0, len(images), size):
            rows = order[start : start + size]
            loss = F.cross_entropy(model(images[rows]), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    accuracy = (in_batches(model, val[0]).argmax(1) == val[1]).float().mean()
    return model, accuracy.item()


# --8<-- [start:measure]
class SampleMeter:
    """Measures sets of images (rows of 784 pixels in [0, 1]) against a
    reference set with a trained classifier: the Fréchet distance on its hidden
    layer's features, the share of each predicted class, the commonest class's
    share and the mean confidence (the top probability)."""

    def __init__(self, classifier, reference_pixels):
        self.classifier = classifier.eval()
        self.features = classifier[:-2]  # up to the hidden layer's ReLU
        self.reference = in_batches(self.features, to_normalised(reference_pixels))

    @torch.no_grad()
    def __call__(self, pixels):
        normalised = to_normalised(pixels)
        probabilities = in_batches(self.classifier, normalised).softmax(dim=1)
        counts = torch.bincount(probabilities.argmax(dim=1), minlength=10)
        features = in_batches(self.features, normalised)
        return {
            "frechet": frechet_distance(self.reference, features),
            "class_shares": (counts / len(pixels)).tolist(),
            "commonest": (counts.max() / len(pixels)).item(),
            "confidence": probabilities.max(dim=1).values.mean().item(),
        }


# --8<-- [end:measure]


# --8<-- [start:autoencoders]
def odd_digits(images):
    """The anomalies: the same digits (rows of 784 pixels) flipped top to
    bottom, and shifted SHIFT pixels right and down (black fills in)."""
    square = images.view(-1, 28, 28)
    shifted = F.pad(square, (SHIFT, 0, SHIFT, 0))[:, :28, :28]
    return {
        "flipped": square.flip(1).reshape(-1, 784),
        "shifted": shifted.reshape(-1, 784),
    }


def autoencoders(train, val, seeds=SEEDS, config=AUTOENCODER):
    """Bottlenecks of 2 and 16, each from every seed: validation error and
    anomaly detection; seed 0's codes and reconstructions for the figures."""
    x, x_val = train, val[0]
    anomalies = odd_digits(x_val)
    is_anomaly = torch.cat([torch.zeros(len(x_val)), torch.ones(len(x_val))])
    result = {"mean_image_error": ((x_val - x.mean(0)) ** 2).mean().item()}
    for bottleneck in BOTTLENECKS:
        runs = []
        for seed in seeds:
            torch.manual_seed(seed)
            model = Autoencoder(bottleneck, config["hidden"], pixels=784)
            started = time.perf_counter()
            train_unsupervised(
                model,
                autoencoder_loss,
                x,
                config["epochs"],
                config["lr"],
                config["batch_size"],
                seed,
            )
            seconds = time.perf_counter() - started
            errors = reconstruction_errors(model, x_val)
            auc = {
                name: roc_auc_score(
                    is_anomaly.numpy(),
                    torch.cat([errors, reconstruction_errors(model, odd)]).numpy(),
                )
                for name, odd in anomalies.items()
            }
            runs.append(
                {
                    "seed": seed,
                    "error": errors.mean().item(),
                    "auc": auc,
                    "seconds": seconds,
                }
            )
            if seed == seeds[0]:
                with torch.no_grad():
                    shown = torch.cat([x_val[:8], model(x_val[:8])])
                    runs[-1]["reconstructions"] = image_bytes(shown)
                    if bottleneck == 2:
                        codes = model.encoder(x_val[:2000])
                        runs[-1]["codes"] = codes.round(decimals=3).tolist()
        result[f"bottleneck {bottleneck}"] = runs
        print(f"autoencoder {bottleneck}:", [round(r["error"], 4) for r in runs])
    return result


# --8<-- [end:autoencoders]


# --8<-- [start:vae]
def variational_autoencoders(train, val, measure, seeds=SEEDS, config=VAE_RECIPE):
    """The VAE from every seed: validation ELBO and samples; seed 0's
    interpolation between two validation digits."""
    runs = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = VAE(config["latent"], config["hidden"], pixels=784)
        started = time.perf_counter()
        train_unsupervised(
            model,
            vae_loss,
            train,
            config["epochs"],
            1e-3,
            config["batch_size"],
            seed,
        )
        seconds = time.perf_counter() - started
        draws = torch.Generator().manual_seed(1000 + seed)
        with torch.no_grad():
            reconstruction, kl = negative_elbo(model, val[0], draws)
            z = torch.randn((SAMPLES, config["latent"]), generator=draws)
            samples = torch.sigmoid(model.decoder(z))
        run = {
            "seed": seed,
            "seconds": seconds,
            "reconstruction": reconstruction.mean().item(),
            "kl": kl.mean().item(),
            # grey targets: the cross-entropy's floor, their own entropy
            "floor": F.binary_cross_entropy(val[0], val[0], reduction="none")
            .sum(1)
            .mean()
            .item(),
            "samples": measure(samples),
        }
        if seed == seeds[0]:
            run["grid"] = image_bytes(samples[:GRID])
            with torch.no_grad():
                ends, _ = model.encode(val[0][:2])  # the means of two digits
                weights = torch.linspace(0, 1, 8).unsqueeze(1)
                path = (1 - weights) * ends[0] + weights * ends[1]
                run["interpolation"] = image_bytes(
                    torch.sigmoid(model.decoder(path))
                )
        runs.append(run)
        print(f"VAE seed {seed}: {run['reconstruction'] + run['kl']:.1f} nats")
    return runs


# --8<-- [end:vae]


# --8<-- [start:contrastive]
def labelled_subset(labels, per_class, generator):
    """``per_class`` random training examples of each digit (all if None)."""
    if per_class is None:
        return torch.arange(len(labels))
    return torch.cat(
        [
            (labels == digit).nonzero()[:, 0][
                torch.randperm(int((labels == digit).sum()), generator=generator)[
                    :per_class
                ]
            ]
            for digit in range(10)
        ]
    )


def pretrain_contrastive(images, seed, config=CONTRASTIVE):
    """The CNN's layers up to its hidden layer, trained by NT-Xent on two views
    of each image of a batch: no labels."""
    torch.manual_seed(seed)
    model = ContrastiveModel(build_cnn(hidden=128)[:-2])
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    draws = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(config["steps"]):
        rows = torch.randint(len(images), (config["batch_size"],), generator=draws)
        first, second = contrastive_views(images[rows], draws)
        # one batch for both views: batch norm sees them together
        projected = model(torch.cat([first, second]))
        loss = nt_xent(*projected.chunk(2), temperature=config["temperature"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.encoder.eval()


def train_supervised(images, labels, val, seed, config=SUPERVISED):
    """The same network trained with labels (the CNN chapter's augmentation),
    the checkpoint with the best validation accuracy kept."""
    torch.manual_seed(seed)
    model = build_cnn(hidden=128)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    draws = torch.Generator().manual_seed(seed)
    best, best_state = -1.0, None
    for step in range(1, config["steps"] + 1):
        model.train()
        rows = torch.randint(len(images), (config["batch_size"],), generator=draws)
        augmented = random_affine(images[rows], generator=draws)
        loss = F.cross_entropy(model(augmented), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % config["check_every"] == 0:
            model.eval()
            accuracy = (
                (in_batches(model, val[0]).argmax(1) == val[1]).float().mean()
            )
            if accuracy > best:
                best, best_state = accuracy.item(), copy_state(model)
    model.load_state_dict(best_state)
    return model.eval(), best


def copy_state(model):
    return {name: value.clone() for name, value in model.state_dict().items()}


def contrastive(train, val, test, seeds=SEEDS):
    """Per seed: one pretraining; per labels-per-class: a label draw, a probe on
    the frozen features, the same network trained supervised; test once each."""
    runs = []
    for seed in seeds:
        started = time.perf_counter()
        encoder = pretrain_contrastive(train[0], seed)
        seconds = time.perf_counter() - started
        features = {
            name: in_batches(encoder, part[0])
            for name, part in (
                ("train", train),
                ("validation", val),
                ("test", test),
            )
        }
        run = {"seed": seed, "pretraining_seconds": seconds, "labels": {}}
        for per_class in LABELS_PER_CLASS:
            chosen = labelled_subset(
                train[1], per_class, torch.Generator().manual_seed(seed)
            )
            probes = {  # the weight decay with the best validation accuracy
                decay: linear_probe(
                    features["train"][chosen], train[1][chosen], decay
                )
                for decay in PROBE_WEIGHT_DECAYS
            }
            with torch.no_grad():
                tried = {
                    decay: (probe(features["validation"]).argmax(1) == val[1])
                    .float()
                    .mean()
                    .item()
                    for decay, probe in probes.items()
                }
                decay = max(tried, key=tried.get)
                probe_test = probes[decay](features["test"]).argmax(1) == test[1]
            model, supervised_val = train_supervised(
                train[0][chosen], train[1][chosen], val, seed
            )
            supervised_test = in_batches(model, test[0]).argmax(1) == test[1]
            run["labels"][str(per_class or "all")] = {
                "probe_weight_decay": decay,
                "probe_validation": tried[decay],
                "probe_tried": {str(d): value for d, value in tried.items()},
                "probe_test": probe_test.float().mean().item(),
                "supervised_validation": supervised_val,
                "supervised_test": supervised_test.float().mean().item(),
            }
        runs.append(run)
        print(f"contrastive seed {seed}:", run["labels"], flush=True)
    return runs


# --8<-- [end:contrastive]


# --8<-- [start:gan]
def gans(train, measure_val, measure, seeds=SEEDS, recipes=None):
    """Each recipe from every seed: losses per epoch, its samples measured on
    the validation images (the comparison) and on the test images (the table)."""
    result = {}
    for name, recipe in (recipes or GAN_RECIPES).items():
        runs = []
        for seed in seeds:
            torch.manual_seed(seed)
            generator, discriminator = gan_networks(
                GAN["latent"], GAN["hidden"], pixels=784
            )
            started = time.perf_counter()
            losses = train_gan(
                generator,
                discriminator,
                train,
                recipe["epochs"],
                recipe["lr"],
                GAN["batch_size"],
                seed,
                recipe.get("saturating", False),
            )
            seconds = time.perf_counter() - started
            noise = torch.Generator().manual_seed(1000 + seed)
            with torch.no_grad():
                samples = generator(
                    torch.randn((SAMPLES, GAN["latent"]), generator=noise)
                )
            run = {
                "seed": seed,
                "seconds": seconds,
                "losses": losses,
                "validation": measure_val(samples),
                "samples": measure(samples),
            }
            if seed == seeds[0]:
                run["grid"] = image_bytes(samples[:GRID])
            runs.append(run)
            print(
                f"GAN {name} seed {seed}:", round(run["validation"]["frechet"], 2)
            )
        result[name] = runs
    return result


# --8<-- [end:gan]


# --8<-- [start:diffusion]
def diffusion(train, measure, seeds=SEEDS, config=DIFFUSION):
    """DDPM and flow matching, each with the same U-Net, steps and samples."""
    schedule = linear_schedule(**SCHEDULE)
    pixels = train * 2 - 1  # [-1, 1]
    losses = {
        "DDPM": lambda net, x, draws: diffusion_loss(net, schedule, x, draws),
        "flow matching": lambda net, x, draws: flow_matching_loss(net, x, draws),
    }
    samplers = {
        "DDPM": lambda net, draws: sample(
            net, schedule, SAMPLES, SAMPLING_STEPS, draws, pixels=784
        ),
        "flow matching": lambda net, draws: sample_flow(
            net, SAMPLES, SAMPLING_STEPS, draws, pixels=784
        ),
    }
    result = {}
    for name, loss_of in losses.items():
        runs = []
        for seed in seeds:
            torch.manual_seed(seed)
            net = TinyUNet(config["channels"])
            draws = torch.Generator().manual_seed(seed)
            started = time.perf_counter()
            train_unsupervised(
                net,
                lambda model, x: loss_of(model, x, draws),  # noqa: B023 (used now)
                pixels,
                config["epochs"],
                config["lr"],
                config["batch_size"],
                seed,
            )
            seconds = time.perf_counter() - started
            started = time.perf_counter()
            samples = samplers[name](
                net, torch.Generator().manual_seed(1000 + seed)
            )
            run = {
                "seed": seed,
                "seconds": seconds,
                "sampling_seconds": time.perf_counter() - started,
                "samples": measure(samples),
            }
            if seed == seeds[0]:
                run["grid"] = image_bytes(samples[:GRID])
            runs.append(run)
            print(f"{name} seed {seed}:", round(run["samples"]["frechet"], 2))
        result[name] = runs
    return result


# --8<-- [end:diffusion]


def real_images(val, measure, seeds=SEEDS):
    """1,000 real validation images per seed, measured like the samples."""
    runs = []
    for seed in seeds:
        rows = torch.randperm(
            len(val), generator=torch.Generator().manual_seed(seed)
        )
        runs.append({"seed": seed, "samples": measure(val[rows[:SAMPLES]])})
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.generative", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data-root", default="data", help="where MNIST is")
    parser.add_argument(
        "--record", action="store_true", help="write docs/records/generative.json"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    load_before = refuse_a_busy_machine(parser, args.record)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    splits = mnist_splits(args.data_root)
    train, val, test = splits["train"], splits["validation"], splits["test"]
    train_pixels, val_pixels = to_pixels(train[0]), to_pixels(val[0])
    classifier, accuracy = train_classifier(train, val)
    test_accuracy = (in_batches(classifier, test[0]).argmax(1) == test[1]).float()
    print(f"classifier: validation {accuracy:.4f}", flush=True)
    measure = SampleMeter(classifier, to_pixels(test[0]))
    measure_val = SampleMeter(classifier, val_pixels)
    metrics = {
        "classifier": {
            **CLASSIFIER,
            "validation_accuracy": accuracy,
            "test_accuracy": test_accuracy.mean().item(),
        },
        "real": real_images(val_pixels, measure),
        "autoencoders": autoencoders(train_pixels, (val_pixels, val[1])),
        "vae": variational_autoencoders(
            train_pixels, (val_pixels, val[1]), measure
        ),
        "gan": gans(train_pixels, measure_val, measure),
        "diffusion": diffusion(train_pixels, measure),
        "contrastive": contrastive(train, val, test),
        "codes_labels": val[1][:2000].tolist(),
        "threads": torch.get_num_threads(),
        "idle_load": IDLE_LOAD,
    }
    metrics["load_average"] = [load_before, os.getloadavg()[0]]
    metrics["total_seconds"] = time.perf_counter() - started
    print(f"{metrics['total_seconds']:.0f} s in all")
    if args.record:
        print("recorded:", write_record("generative", metrics, PRODUCERS, "cpu"))
    return metrics


if __name__ == "__main__":
    main()
