"""Tensors: the code of docs/tensors.md.

The page teaches creating tensors (and why ``torch.empty`` holds no values),
shapes and dtypes with their promotion rules, indexing and masks, views and
contiguity, broadcasting and its silent shape bug, in-place operations, matrix
products, reductions, the NumPy bridge and devices; four exercises close it.
Each section is small and fast. What the page runs is at the end, at module
level; importing the module runs nothing.
"""

# What the page runs, in page order, at module level as on the page:
# `python -m snippets.tensors` prints what the page prints.
if __name__ == "__main__":
    # --8<-- [start:create]
    import torch

    print(torch.zeros(2, 3))  # filled with 0.0
    print(torch.ones(2, 3, dtype=torch.int64))  # filled with 1, as 64-bit ints
    print(torch.full((2, 3), 7.5))  # filled with any value
    print(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))  # copies (nested) Python data
    print(torch.arange(0, 10, 3))  # like range(): start, stop (excluded), step
    print(torch.linspace(0, 1, 5))  # 5 evenly spaced points, both ends included
    # --8<-- [end:create]

    # --8<-- [start:random]
    import torch

    torch.manual_seed(0)  # the same "random" numbers on every run
    print(torch.rand(2, 3))  # uniform on [0, 1)
    print(torch.randn(2, 3))  # standard normal: mean 0, standard deviation 1
    print(torch.randint(0, 10, (2, 3)))  # integers in [0, 10)

    generator = torch.Generator().manual_seed(0)  # a private, seeded stream
    print(torch.rand(3, generator=generator))  # same seed, same first numbers
    # --8<-- [end:random]

    # --8<-- [start:empty]
    import torch

    buffer = torch.empty(2, 3)  # allocates memory, writes nothing into it
    print(buffer.shape, buffer.dtype)  # shape and dtype: set. Values: not set.
    buffer.fill_(0.5)  # fill it before reading it
    print(buffer)

    scratch = torch.empty(2, 3)
    scratch.uniform_(-1, 1, generator=torch.Generator().manual_seed(0))
    print(scratch)  # or overwrite every element with an in-place initialiser

    # A debugging aid: in deterministic mode, fresh memory is filled with NaN,
    # so code that reads it by mistake produces NaN, not plausible numbers.
    torch.use_deterministic_algorithms(True)
    print(torch.empty(3))
    torch.use_deterministic_algorithms(False)
    # --8<-- [end:empty]

    # --8<-- [start:dtypes]
    import torch

    x = torch.zeros(2, 3)
    print(x.shape, x.ndim, x.numel(), x.dtype, x.device)
    print("from Python floats:", torch.tensor([1.5, 2.0]).dtype)
    print("from Python ints:  ", torch.tensor([1, 2]).dtype)
    print("from Python bools: ", torch.tensor([True, False]).dtype)

    ints = torch.tensor([1, 2, 3])
    int32s = torch.ones(2, dtype=torch.int32)
    halves = torch.ones(2, dtype=torch.float16)
    print("int64 / 2:         ", ints / 2)  # true division: always floating
    print("int64 // 2:        ", ints // 2)  # floor division: stays integer
    print("int64 + 0.5:       ", (ints + 0.5).dtype)  # a float: category goes up
    print("int32 + 7:         ", (int32s + 7).dtype)  # a Python int: no widening
    print("float16 + float32: ", (halves + torch.ones(2)).dtype)  # wider wins
    print("promote_types:     ", torch.promote_types(torch.int32, torch.float16))
    print("converted:         ", ints.float().dtype, ints.to(torch.float64).dtype)
    # --8<-- [end:dtypes]

    # --8<-- [start:float-equality]
    import torch

    total = torch.full((10,), 0.1).sum()  # 0.1 added ten times, in float32
    print(total.item(), total == 1.0)  # 0.1 has no exact binary form
    print(torch.isclose(total, torch.tensor(1.0)))  # compare with a tolerance
    torch.testing.assert_close(total, torch.tensor(1.0))  # in tests: raises if not
    # --8<-- [end:float-equality]

    # --8<-- [start:indexing]
    import torch

    x = torch.arange(12).reshape(3, 4)
    print(x)
    print(x[0])  # the first row
    print(x[:, 1])  # the second column
    print(x[1:, ::2])  # rows 1 onwards, every other column
    print(x[-1, -1], x[-1, -1].item())  # a 0-d tensor, and the Python number

    mask = x % 3 == 0  # a comparison gives a bool tensor of the same shape
    print(mask)
    print(x[mask])  # the selected elements, as 1-d, in row-major order
    print(x[[0, 2]])  # a list of indices: rows 0 and 2

    y = x.clone()
    y[y > 8] = -1  # assign through a mask: every element above 8
    print(y)
    # --8<-- [end:indexing]

    # --8<-- [start:views]
    import torch

    x = torch.arange(6)
    v = x.view(2, 3)  # a view: new shape, same memory
    v[0, 0] = 100  # write through the view ...
    print(x)  # ... and x sees it
    same_memory = v.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    print("one storage:", same_memory)
    print(x.view(3, -1).shape)  # -1: "infer this size"

    v[1].zero_()  # a slice is a view too: this zeroes x[3:]
    print(x)

    picked = x[[0, 1]]  # advanced indexing (a list or a mask) copies
    picked[:] = -7
    print(x)  # unchanged by the write to the copy
    # --8<-- [end:views]

    # --8<-- [start:contiguity]
    import textwrap

    import torch

    m = torch.arange(6).view(2, 3)
    t = m.t()  # the transpose is a view: no data moves, the strides swap
    print("strides:", m.stride(), t.stride())  # steps to the next row, column
    print("contiguous:", m.is_contiguous(), t.is_contiguous())
    try:
        t.view(6)  # t's elements are not in row-major order in memory
    except RuntimeError as error:
        print(textwrap.fill(f"RuntimeError: {error}", 80))

    flat = t.reshape(6)  # a view when possible, a copy when not
    print(flat, "shares m's memory:", flat.data_ptr() == m.data_ptr())
    print("m.reshape(6) shares:", m.reshape(6).data_ptr() == m.data_ptr())
    print(t.contiguous().is_contiguous())  # a row-major copy
    # --8<-- [end:contiguity]

    # --8<-- [start:squeeze]
    import torch

    v = torch.tensor([1.0, 2.0, 3.0])  # shape (3,)
    print(v.unsqueeze(0).shape, v.unsqueeze(1).shape)  # a row, a column
    print(v[None, :].shape, v[:, None].shape)  # the same, with None
    padded = torch.zeros(1, 3, 1)
    print(padded.squeeze().shape, padded.squeeze(0).shape)  # all, or one

    image = torch.zeros(28, 32, 3)  # height, width, channels (PIL, NumPy)
    chw = image.permute(2, 0, 1)  # channels first, as PyTorch layers expect
    print(chw.shape, chw.is_contiguous())  # a view with reordered strides
    # --8<-- [end:squeeze]

    # --8<-- [start:squeeze-trap]
    import torch

    logits = torch.zeros(1, 1)  # a batch of ONE sample, with one output
    print(logits.squeeze().shape)  # the batch dimension is gone too
    print(logits.squeeze(1).shape)  # name the dim: the batch dim survives
    # --8<-- [end:squeeze-trap]

    # --8<-- [start:broadcasting]
    import torch

    column = torch.tensor([[0], [10], [20]])  # shape (3, 1)
    row = torch.arange(4)  # shape (4,), which acts as (1, 4)
    table = column + row  # each size-1 dim is repeated: (3, 4)
    print(table.shape)
    print(table)
    # --8<-- [end:broadcasting]

    # --8<-- [start:broadcasting-center]
    import torch

    torch.manual_seed(0)
    data = torch.rand(5, 3) * 10  # 5 samples, 3 features
    mean = data.mean(dim=0)  # shape (3,): one mean per feature
    centered = data - mean  # (5, 3) - (3,): subtracted from every sample
    print(mean.shape, centered.shape)
    print("feature means now:", centered.mean(dim=0))  # 0, up to rounding
    # --8<-- [end:broadcasting-center]

    # --8<-- [start:broadcasting-error]
    import textwrap

    import torch

    a = torch.ones(2, 3)
    b = torch.tensor([10.0, 20.0])  # meant as one value per ROW of a
    try:
        a + b  # (2, 3) with (2,): the last sizes are 3 and 2, neither is 1
    except RuntimeError as error:
        print(textwrap.fill(f"RuntimeError: {error}", 80))
    print(a + b[:, None])  # b as a column, (2, 1): repeated along each row
    # --8<-- [end:broadcasting-error]

    # --8<-- [start:broadcasting-trap]
    import torch

    predictions = torch.tensor([[1.0], [2.0], [3.0]])  # model output: (3, 1)
    targets = torch.tensor([1.0, 2.0, 3.0])  # labels: (3,)
    difference = predictions - targets  # (3, 1) - (3,) -> (3, 3): every pair!
    wrong = (difference**2).mean()
    right = ((predictions.squeeze(1) - targets) ** 2).mean()
    print(difference.shape, wrong, right)  # perfect predictions, nonzero loss
    # --8<-- [end:broadcasting-trap]

    # --8<-- [start:math]
    import torch

    a = torch.tensor([1.0, 2.0, 3.0])
    b = torch.tensor([10.0, 20.0, 30.0])
    print(a + b, a * b)  # elementwise
    print(b / a, a**2)
    print(torch.exp(a), a.sqrt())  # functions, or methods
    print(a.clamp(max=2.0))  # caps every element at 2

    c = a.add(1)  # out of place: a new tensor, a is unchanged
    print(a, c)
    same = a.add_(1)  # in place (trailing underscore): changes a, returns a
    print(a, same is a)
    a.mul_(2).sub_(1)  # in-place methods chain
    print(a)
    a += 1  # augmented assignment is in place too
    print(a)
    # --8<-- [end:math]

    # --8<-- [start:matmul]
    import textwrap

    import torch

    A = torch.arange(6.0).reshape(2, 3)
    B = torch.ones(3, 4)
    print((A @ B).shape)  # (2, 3) @ (3, 4) -> (2, 4): inner sizes match
    print(torch.equal(torch.matmul(A, B), A @ B))  # @ is torch.matmul
    v = torch.tensor([1.0, 0.0, -1.0])
    print(A @ v)  # matrix @ vector -> a vector of shape (2,)
    print(v @ v)  # vector @ vector -> their dot product, 0-d
    batch = torch.ones(10, 2, 3)
    print((batch @ B).shape)  # batched: leading dims broadcast
    print(A * A)  # the elementwise product: NOT a matrix product
    try:
        A @ A  # (2, 3) @ (2, 3): inner sizes 3 and 2 differ
    except RuntimeError as error:
        print(textwrap.fill(f"RuntimeError: {error}", 80))
    print((A @ A.T).shape)  # (2, 3) @ (3, 2) -> (2, 2)
    # --8<-- [end:matmul]

    # --8<-- [start:reductions]
    import textwrap

    import torch

    scores = torch.tensor([[1.0, 5.0, 2.0], [4.0, 0.0, 6.0]])  # 2 rows, 3 cols
    print(scores.sum(), scores.mean())  # everything: 0-d tensors
    print(scores.sum(dim=0))  # dim 0 summed away: a total per column, (3,)
    print(scores.sum(dim=1))  # dim 1 summed away: a total per row, (2,)
    print(scores.sum(dim=1, keepdim=True).shape)  # dim 1 kept, with size 1

    values, indices = scores.max(dim=1)  # with dim: the maxima and where
    print(values, indices)
    print(scores.argmax(dim=1))  # only where: each row's predicted class
    print(scores / scores.sum(dim=1, keepdim=True))  # each row sums to 1
    try:
        torch.arange(3).mean()  # a mean of integers is not an integer
    except RuntimeError as error:
        print(textwrap.fill(f"RuntimeError: {error}", 80))
    # --8<-- [end:reductions]

    # --8<-- [start:keepdim-trap]
    import torch

    square = torch.tensor([[1.0, 3.0], [2.0, 6.0]])  # row sums: 4 and 8
    wrong = square / square.sum(dim=1)  # (2,) runs along the columns!
    right = square / square.sum(dim=1, keepdim=True)  # (2, 1): one per row
    print("row sums, wrong:", wrong.sum(dim=1), " right:", right.sum(dim=1))
    # --8<-- [end:keepdim-trap]

    # --8<-- [start:numpy]
    import textwrap

    import numpy as np
    import torch

    array = np.zeros(3)
    shared = torch.from_numpy(array)  # no copy: uses the array's memory
    shared[0] = 1.0  # write through the tensor ...
    print(array)  # ... and NumPy sees it
    array[1] = 2.0  # and the other way round
    print(shared)  # note: NumPy's default float64 is kept

    back = shared.numpy()  # shares memory too
    back[2] = 3.0
    print(array)

    copied = torch.tensor(array)  # torch.tensor always copies
    copied[0] = -1.0
    print(array, copied)
    print(shared.float().dtype)  # models use float32: convert before use
    try:
        torch.ones(2, requires_grad=True).numpy()
    except RuntimeError as error:
        print(textwrap.fill(f"RuntimeError: {error}", 80))
    # --8<-- [end:numpy]

    # --8<-- [start:device]
    import torch

    accelerator = torch.accelerator.current_accelerator(check_available=True)
    device = accelerator or torch.device("cpu")  # None -> the CPU
    print(device)

    x = torch.ones(2, 3, device=device)  # create on the device
    y = torch.arange(3.0).to(device)  # or move a tensor there
    print(x.device, y.device, (x + y).device)
    print(y.to(device) is y)  # already there: .to returns the tensor itself
    print(y.cpu().tolist())  # back to the CPU, then to Python numbers

    unchecked = torch.accelerator.current_accelerator()  # without the check
    print("unchecked:", unchecked, "usable:", torch.accelerator.is_available())
    # --8<-- [end:device]

    # --8<-- [start:exercise-distances]
    import torch

    torch.manual_seed(0)
    points = torch.rand(6, 2)  # 6 points in the plane
    differences = points[:, None, :] - points[None, :, :]  # (6, 6, 2)
    distances = differences.pow(2).sum(dim=-1).sqrt()  # (6, 6)
    print(distances.shape)
    print(torch.allclose(distances, torch.cdist(points, points), atol=1e-6))

    others = distances.clone().fill_diagonal_(float("inf"))  # not oneself
    nearest = others.argmin(dim=1)
    print("nearest neighbours:", nearest)
    # --8<-- [end:exercise-distances]

    # --8<-- [start:exercise-one-hot]
    import torch

    labels = torch.tensor([2, 0, 1, 2, 1])
    one_hot = (labels[:, None] == torch.arange(3)).float()  # (5, 1) vs (3,)
    print(one_hot)

    logits = torch.tensor(
        [
            [0.1, 0.2, 3.0],
            [2.0, 0.5, 0.1],
            [0.3, 0.1, 0.2],
            [0.0, 0.1, 0.9],
            [0.2, 1.5, 0.3],
        ]
    )
    predictions = logits.argmax(dim=1)
    accuracy = (predictions == labels).float().mean()  # True -> 1.0, then mean
    print(predictions, accuracy)
    # --8<-- [end:exercise-one-hot]

    # --8<-- [start:exercise-images]
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 28, 28, 3), dtype=np.uint8)  # NHWC
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    print(batch.shape, batch.dtype, batch.min() >= 0, batch.max() <= 1)

    pixel_before = images[1, 5, 7, 2] / np.float32(255)  # sample 1, row 5,
    print(batch[1, 2, 5, 7].item() == pixel_before)  # column 7, channel 2
    print(batch.is_contiguous(), batch.contiguous().is_contiguous())
    # --8<-- [end:exercise-images]

    # --8<-- [start:exercise-softmax]
    import torch

    def softmax_rows(logits):
        """Softmax of each row, safe for large logits."""
        row_max = logits.max(dim=1, keepdim=True).values
        exps = (logits - row_max).exp()  # largest exponent 0: no overflow
        return exps / exps.sum(dim=1, keepdim=True)

    logits = torch.tensor([[1.0, 2.0, 3.0], [1000.0, 1001.0, 1002.0]])
    naive = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
    print(naive)  # exp(1000) is inf in float32, and inf / inf is nan
    print(softmax_rows(logits))  # equal rows: softmax ignores a shift
    print(torch.allclose(softmax_rows(logits), torch.softmax(logits, dim=1)))
    # --8<-- [end:exercise-softmax]
