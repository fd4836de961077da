"""From a neuron to a network: the code of docs/neurons.md.

The page goes from one neuron (a weighted sum and an activation, by hand and as
``nn.Linear``) to a layer (one matrix product) and a network whose hidden
weights are learned like all others, then reads its outputs (logits, argmax,
softmax) and counts its parameters. The exercises compute a neuron, count an
MLP's parameters and choose logits for given probabilities.

What the page runs is at the end, at module level; importing the module runs
nothing.
"""

# What the page runs, in page order, at module level as on the page:
# `python -m snippets.neurons` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:neuron-by-hand]
    import math

    inputs = [0.5, -1.0, 2.0]
    weights = [0.8, 0.2, -0.5]
    bias = 0.1

    # weighted sum: 0.5·0.8 + (−1.0)·0.2 + 2.0·(−0.5) + 0.1
    weighted_sum = sum(x * w for x, w in zip(inputs, weights)) + bias
    relu_output = max(0.0, weighted_sum)
    sigmoid_output = 1 / (1 + math.exp(-weighted_sum))
    print(f"weighted sum z = {weighted_sum:.4f}")
    print(f"ReLU(z)        = {relu_output:.4f}")
    print(f"sigmoid(z)     = {sigmoid_output:.4f}")
    # --8<-- [end:neuron-by-hand]

    # --8<-- [start:neuron-linear]
    import torch
    from torch import nn

    neuron = nn.Linear(in_features=3, out_features=1)
    with torch.no_grad():  # set the parameters to the hand-chosen values
        neuron.weight.copy_(torch.tensor([[0.8, 0.2, -0.5]]))
        neuron.bias.copy_(torch.tensor([0.1]))

    x = torch.tensor([0.5, -1.0, 2.0])
    z = neuron(x)
    print("z          =", z)
    print("sigmoid(z) =", torch.sigmoid(z))
    same = math.isclose(z.item(), weighted_sum, abs_tol=1e-6)
    print("same as by hand:", same)
    # --8<-- [end:neuron-linear]

    # --8<-- [start:activation-figure]
    import matplotlib.pyplot as plt
    import torch

    # The same neuron, varying its first input and keeping the others fixed.
    first_input = torch.linspace(-6, 6, 241)
    z_curve = 0.8 * first_input + 0.2 * -1.0 + -0.5 * 2.0 + 0.1
    curves = {
        "step (z > 0)": (z_curve > 0).float(),
        "sigmoid": torch.sigmoid(z_curve),
        "tanh": torch.tanh(z_curve),
        "ReLU": torch.relu(z_curve),
    }
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, output in curves.items():
        style = "--" if label.startswith("step") else "-"
        ax.plot(first_input, output, label=label, linestyle=style)
    ax.set(
        title="One neuron's output as its first input varies",
        xlabel="first input x₁",
        ylabel="neuron output",
        ylim=(-1.2, 3.8),
    )
    ax.axhline(0, color="black", linewidth=0.5)
    ax.legend()
    # --8<-- [end:activation-figure]

    # --8<-- [start:layer]
    import torch
    from torch import nn

    torch.manual_seed(0)
    # 4 neurons, each sees all 3 inputs
    layer = nn.Linear(in_features=3, out_features=4)
    print("weight", tuple(layer.weight.shape), " bias", tuple(layer.bias.shape))

    x = torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad():  # only looking at numbers: no gradients needed
        layer_output = layer(x)
        # neuron by neuron: each row of the weight is one neuron's weights
        by_rows = torch.stack(
            [row @ x + b for row, b in zip(layer.weight, layer.bias)]
        )
        as_matrix_product = x @ layer.weight.T + layer.bias
    print("layer(x):          ", layer_output)
    print("neuron by neuron:  ", by_rows)
    print("one matrix product:", as_matrix_product)
    # --8<-- [end:layer]

    # --8<-- [start:network]
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(784, 128),  # hidden layer: 128 neurons, each sees 784 pixels
        nn.ReLU(),
        nn.Linear(128, 10),  # output layer: one score per digit 0-9
    )
    images = torch.rand(2, 784)  # a batch of 2 flattened 28×28 images
    logits = model(images)
    print(model)
    print("logits shape:", tuple(logits.shape))
    print("first image:", logits[0].detach().numpy().round(2))
    # --8<-- [end:network]

    # --8<-- [start:hidden-learns]
    import torch
    from torch import nn

    torch.manual_seed(0)
    small = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    hidden_before = small[0].weight.detach().clone()

    inputs = torch.randn(8, 4)
    targets = torch.randint(0, 2, (8,))
    optimizer = torch.optim.SGD(small.parameters(), lr=0.5)
    loss = nn.functional.cross_entropy(small(inputs), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()  # updates every parameter, the hidden layer's included

    hidden_change = small[0].weight.detach() - hidden_before
    print("hidden-layer weight before:")
    print(hidden_before)
    print("change after one optimizer step:")
    print(hidden_change)
    print("hidden weights changed:", bool(hidden_change.abs().max() > 0))
    # --8<-- [end:hidden-learns]

    # --8<-- [start:softmax]
    import math

    import torch

    classes = ["cat", "dog"]
    # the cat score is log 4 ≈ 1.386 higher than the dog score
    cat_dog_logits = torch.tensor([math.log(4), 0.0])
    probabilities = torch.softmax(cat_dog_logits, dim=0)
    predicted = classes[cat_dog_logits.argmax().item()]
    for name, logit, p in zip(classes, cat_dog_logits, probabilities):
        print(f"{name}: logit {logit.item():.4f}  probability {p.item():.4f}")
    print("argmax ->", predicted)
    # adding the same constant to every logit changes nothing
    shifted = torch.softmax(cat_dog_logits + 10.0, dim=0)
    print("softmax(logits + 10) =", shifted)
    # --8<-- [end:softmax]

    # --8<-- [start:count-params]
    from torch import nn

    def mlp(*sizes):
        """Fully connected: a Linear layer per pair of sizes, ReLU between."""
        layers = []
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        return nn.Sequential(*layers[:-1])  # no activation after the output

    def parameter_formula(*sizes):
        """Σ (n_in·n_out + n_out): a weight per link, a bias per neuron."""
        pairs = zip(sizes, sizes[1:])
        return sum(n_in * n_out + n_out for n_in, n_out in pairs)

    parameter_counts = {}
    for sizes in [(784, 128, 10), (784, 256, 128, 10)]:
        by_formula = parameter_formula(*sizes)
        counted = sum(p.numel() for p in mlp(*sizes).parameters())
        parameter_counts[sizes] = (by_formula, counted)
        name = "-".join(map(str, sizes))
        print(f"{name:>14}: formula {by_formula:,}  numel {counted:,}")
    # --8<-- [end:count-params]

    # --8<-- [start:exercise-neuron]
    import torch
    from torch import nn

    # By hand: z = 1·0.5 + 2·(−0.25) + 3·0.1 − 0.3 = 0
    # so sigmoid(z) = 0.5 and ReLU(z) = 0
    exercise_neuron = nn.Linear(3, 1)
    with torch.no_grad():
        exercise_neuron.weight.copy_(torch.tensor([[0.5, -0.25, 0.1]]))
        exercise_neuron.bias.fill_(-0.3)
    exercise_z = exercise_neuron(torch.tensor([1.0, 2.0, 3.0]))
    print("z =", round(exercise_z.item(), 6))
    print("sigmoid(z) =", torch.sigmoid(exercise_z).item())
    print("ReLU(z) =", torch.relu(exercise_z).item())
    # --8<-- [end:exercise-neuron]

    # --8<-- [start:exercise-params]
    from torch import nn

    # 3072 = 3·32·32 colour pixel values
    cifar_mlp = nn.Sequential(nn.Linear(3072, 512), nn.ReLU(), nn.Linear(512, 10))
    cifar_count = sum(p.numel() for p in cifar_mlp.parameters())
    cifar_formula = 3072 * 512 + 512 + 512 * 10 + 10
    print(f"{cifar_formula:,} by the formula, {cifar_count:,} counted")
    # --8<-- [end:exercise-params]

    # --8<-- [start:exercise-logits]
    import math

    import torch

    # softmax([a, 0]) = [eᵃ / (eᵃ + 1), 1 / (eᵃ + 1)]: 0.9 / 0.1 needs eᵃ = 9
    nine_to_one = torch.softmax(torch.tensor([math.log(9), 0.0]), dim=0)
    # in general: the logarithms of the wanted probabilities
    wanted = torch.tensor([0.5, 0.3, 0.2])
    three_way = torch.softmax(torch.log(wanted), dim=0)
    print(nine_to_one)
    print(three_way)
    # --8<-- [end:exercise-logits]
