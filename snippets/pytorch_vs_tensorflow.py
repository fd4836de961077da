"""PyTorch and TensorFlow: the code of docs/pytorch_vs_tensorflow.md.

The page shows the PyTorch side of the comparison: eager execution (a forward
that is plain Python), NumPy interop (shared memory or a copy), compiling with
``torch.compile`` and exporting a whole graph with ``torch.export``. The
exercises check a model's layers for non-finite values and a NumPy view of a
tensor. No TensorFlow code runs.

What the page runs is at the end, at module level; importing the module runs
nothing.
"""

# What the page runs, in page order, at module level as on the page:
# `python -m snippets.pytorch_vs_tensorflow` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:eager]
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Linear(4, 3)
            self.out = nn.Linear(3, 2)

        def forward(self, x):
            h = torch.relu(self.hidden(x))
            # plain Python: runs on every call, prints real values
            print("hidden:", tuple(h.shape), "mean", round(h.mean().item(), 4))
            if h.mean() > 0.1:  # ordinary control flow on a tensor's value
                h = h * 2
            return self.out(h)

    torch.manual_seed(0)
    tiny = TinyNet()
    eager_output = tiny(torch.randn(5, 4))
    print("output:", tuple(eager_output.shape))
    # --8<-- [end:eager]

    # --8<-- [start:numpy]
    import numpy as np
    import torch

    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    shared = torch.from_numpy(array)  # no copy: uses the array's memory
    copied = torch.tensor(array)  # a copy
    array[0, 0] = 100.0
    print("from_numpy sees the change:", shared[0, 0].item())
    print("torch.tensor copy does not: ", copied[0, 0].item())
    # CPU tensor -> NumPy array (for a GPU tensor: .cpu().numpy())
    back = (shared * 2).numpy()
    print(type(back).__name__, back.dtype, back.tolist())
    # --8<-- [end:numpy]

    # --8<-- [start:compile]
    import torch

    def gelu_tanh(x):
        return 0.5 * x * (1 + torch.tanh(0.7978845608 * (x + 0.044715 * x**3)))

    x = torch.linspace(-2, 2, 5)
    # capture the graph (the note below explains the backend)
    compiled_gelu = torch.compile(gelu_tanh, backend="aot_eager")
    compiled_result = compiled_gelu(x)
    eager_result = gelu_tanh(x)
    print("eager:   ", eager_result)
    print("compiled:", compiled_result)
    print("same result:", torch.allclose(eager_result, compiled_result))
    # --8<-- [end:compile]

    # --8<-- [start:export]
    import torch
    from torch import nn

    torch.manual_seed(0)
    to_export = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    example = torch.randn(2, 4)
    # the whole model as one graph of ATen operations, no Python needed
    exported = torch.export.export(to_export, (example,))
    for node in exported.graph.nodes:
        print(f"{node.op:14} {node.name:10} {node.target}")
    same = torch.equal(exported.module()(example), to_export(example))
    print("same as eager:", same)
    # --8<-- [end:export]

    # --8<-- [start:exercise-debug]
    import torch
    from torch import nn

    class Checked(nn.Module):
        """Stop at the first layer whose output is not finite, naming it."""

        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))

        def forward(self, x):
            for index, layer in enumerate(self.layers):
                x = layer(x)
                if not torch.isfinite(x).all():
                    name = type(layer).__name__
                    raise ValueError(
                        f"layer {index} ({name}) produced non-finite values"
                    )
            return x

    checked = Checked()
    print(tuple(checked(torch.ones(2, 3)).shape))
    try:
        checked(torch.tensor([[1.0, float("inf"), 0.0]]))
    except ValueError as error:
        debug_message = str(error)
        print("caught:", debug_message)
    # --8<-- [end:exercise-debug]

    # --8<-- [start:exercise-numpy]
    import numpy as np
    import torch

    tensor = torch.zeros(3)
    view = tensor.numpy()  # shares the tensor's memory, like from_numpy
    tensor += 1  # an in-place change to the tensor
    print(view)  # the array sees it
    independent = tensor.numpy().copy()
    tensor += 1
    print(view, independent)
    # --8<-- [end:exercise-numpy]
