"""What deep learning is: the code of docs/deep_learning.md.

The page contrasts a rule written by a person with one learned from examples
(Celsius to Fahrenheit by gradient descent), shows a hidden layer learning a
feature a linear model cannot (a circle), and the shapes of the building blocks
(Linear, Conv2d, LSTM, a Transformer layer). The exercises learn Celsius to
Kelvin and check a convolution's output size.

What the page runs is at the end, at module level; importing the module runs
nothing.
"""

# What the page runs, in page order, at module level as on the page:
# `python -m snippets.deep_learning` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:rule]
    def celsius_to_fahrenheit(celsius):
        """Traditional programming: a person wrote the rule."""
        return celsius * 1.8 + 32

    for celsius in (-40, 0, 37, 100):
        print(f"{celsius:>4} °C -> {celsius_to_fahrenheit(celsius):6.1f} °F")
    # --8<-- [end:rule]

    # --8<-- [start:learn]
    import torch
    from torch import nn

    torch.manual_seed(0)
    # The examples: inputs and their answers (the model never sees the rule).
    celsius = torch.tensor([-40.0, -10, 0, 8, 15, 22, 38]).unsqueeze(1)
    fahrenheit = torch.tensor([-40.0, 14, 32, 46.4, 59, 71.6, 100.4]).unsqueeze(1)

    # fahrenheit ≈ weight * celsius + bias; both start random
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    for step in range(5001):
        loss = nn.functional.mse_loss(model(celsius), fahrenheit)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 1000 == 0:
            print(
                f"step {step:4d}  loss {loss.item():10.4f}  "
                f"weight {model.weight.item():.4f}  "
                f"bias {model.bias.item():7.4f}"
            )

    learned_weight, learned_bias = model.weight.item(), model.bias.item()
    with torch.no_grad():
        prediction = model(torch.tensor([[100.0]])).item()
    print(f"100 °C -> {prediction:.2f} °F (the rule says 212)")
    # --8<-- [end:learn]

    # --8<-- [start:features]
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(0)

    def circle_data(n):
        """Points in a square; label 1 inside a circle of radius 0.7."""
        points = torch.rand(n, 2, generator=generator) * 2 - 1
        return points, (points.norm(dim=1) < 0.7).float()

    train_points, train_labels = circle_data(400)
    test_points, test_labels = circle_data(400)

    def fit_and_score(model, steps=300):
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(steps):
            logits = model(train_points).squeeze(1)
            loss = nn.functional.binary_cross_entropy_with_logits(
                logits, train_labels
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            predictions = (model(test_points).squeeze(1) > 0).float()
        return (predictions == test_labels).float().mean().item()

    torch.manual_seed(0)
    linear_accuracy = fit_and_score(nn.Linear(2, 1))  # one straight line
    deep_accuracy = fit_and_score(
        nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
    )
    majority = max(test_labels.mean().item(), 1 - test_labels.mean().item())
    print(f"always answer 'outside':        {majority:.1%}")
    print(f"linear model (no hidden layer): {linear_accuracy:.1%}")
    print(f"one hidden layer of 16:         {deep_accuracy:.1%}")
    # --8<-- [end:features]

    # --8<-- [start:blocks]
    import torch
    from torch import nn

    torch.manual_seed(0)
    batch = 8
    shapes = {}

    # 8 rows of 20 numbers (a table)
    features = torch.randn(batch, 20)
    linear = nn.Linear(20, 5)
    shapes["Linear(20, 5)"] = (features.shape, linear(features).shape)

    # 8 RGB images of 32×32 pixels
    images = torch.randn(batch, 3, 32, 32)
    conv = nn.Conv2d(in_channels=3, out_channels=16, kernel_size=3, padding=1)
    shapes["Conv2d(3, 16, 3, padding=1)"] = (images.shape, conv(images).shape)

    # 8 sequences of 10 steps, 12 numbers per step
    sequences = torch.randn(batch, 10, 12)
    lstm = nn.LSTM(input_size=12, hidden_size=32, batch_first=True)
    lstm_outputs, (last_hidden, last_cell) = lstm(sequences)
    shapes["LSTM(12, 32)"] = (sequences.shape, lstm_outputs.shape)

    # 8 sequences of 10 tokens, each token a 64-number embedding
    tokens = torch.randn(batch, 10, 64)
    encoder_layer = nn.TransformerEncoderLayer(
        d_model=64, nhead=4, dim_feedforward=128, batch_first=True
    )
    encoder_layer.eval()  # no dropout: the output is deterministic
    shapes["TransformerEncoderLayer(64, 4)"] = (
        tokens.shape,
        encoder_layer(tokens).shape,
    )

    for block, (shape_in, shape_out) in shapes.items():
        shape_in, shape_out = str(tuple(shape_in)), str(tuple(shape_out))
        print(f"{block:31} {shape_in:>14} -> {shape_out}")
    # --8<-- [end:blocks]

    # --8<-- [start:exercise-kelvin]
    import torch
    from torch import nn

    torch.manual_seed(0)
    celsius = torch.tensor([-40.0, -10, 0, 8, 15, 22, 38]).unsqueeze(1)
    kelvin = celsius + 273.15  # the answers; the model only sees the pairs

    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    for _ in range(8001):
        loss = nn.functional.mse_loss(model(celsius), kelvin)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    kelvin_weight, kelvin_bias = model.weight.item(), model.bias.item()
    print(f"weight {kelvin_weight:.4f}  bias {kelvin_bias:.2f}")
    print("exact:  weight 1       bias 273.15")
    # --8<-- [end:exercise-kelvin]

    # --8<-- [start:exercise-conv]
    import torch
    from torch import nn

    images = torch.randn(4, 1, 28, 28)  # 4 grey-scale 28×28 images, like MNIST
    no_padding = nn.Conv2d(1, 8, kernel_size=5)
    same_padding = nn.Conv2d(1, 8, kernel_size=5, padding=2)
    print(tuple(no_padding(images).shape))  # 28 - 5 + 1 = 24
    print(tuple(same_padding(images).shape))  # 28 + 2·2 - 5 + 1 = 28
    # --8<-- [end:exercise-conv]
