"""Tensors: the code of docs/tensors.md."""

# --8<-- [start:create]
import torch

x = torch.zeros(2, 3)
print(x)
# --8<-- [end:create]

# --8<-- [start:plot]
import matplotlib.pyplot as plt
import torch

xs = torch.linspace(-3, 3, 50)
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(xs, xs.tanh(), label="tanh")
ax.set(title="tanh", xlabel="x", ylabel="tanh(x)")
ax.legend()
# --8<-- [end:plot]
