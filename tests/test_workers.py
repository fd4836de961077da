"""docs/workers.md: what worker processes buy, their random numbers, start methods and pickling, their memory, and
what the main process sees when one fails.

The page's blocks run once here in page order (the ``page`` and ``printed`` fixtures of tests/conftest.py); what
depends on time and on other processes (timings, scripts run with forkserver and spawn, failing workers) is checked
on the page's own run, the one the site shows (the ``shown`` fixture); the module's definitions are imported for the
tests that need fresh loaders."""

import ast
import gc
import os
import random
import re
import time
import weakref

import pytest
import torch
from conftest import DOCS, snippet_sections, test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, get_worker_info

import snippets.workers as w


def test_the_files_are_read_back_one_per_item(page, printed):
    assert "1797 files; item 0: (1, 8, 8) label 0" in printed
    assert page.dataset.classes == [str(d) for d in range(10)]
    assert page.image.dtype == torch.float32 and 0 <= page.image.min() < page.image.max() <= 1


def test_workers_give_the_same_items_as_the_main_process(page):
    some = Subset(page.dataset, range(0, len(page.dataset), 14))  # 129 items: 3 batches

    def ordered(workers):
        return torch.cat([images for images, _labels in DataLoader(some, batch_size=64, num_workers=workers)])

    assert torch.equal(ordered(0), ordered(2))


class Scaled(Dataset):
    """Items 0..3 times ``factor``: a stand-in for a dataset whose transform changes."""

    factor = 1

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return index * self.factor


def test_persistent_workers_keep_the_dataset_they_started_with():
    dataset = Scaled()
    loader = DataLoader(dataset, batch_size=4, num_workers=1, persistent_workers=True)
    assert next(iter(loader)).tolist() == [0, 1, 2, 3]
    dataset.factor = 10  # as `dataset.transform = ...` after the first epoch
    assert next(iter(loader)).tolist() == [0, 1, 2, 3]  # the worker's copy
    assert next(iter(DataLoader(dataset, batch_size=4))).tolist() == [0, 10, 20, 30]


@pytest.fixture(scope="module")
def shown(page_run):
    """The claims about timings and other processes are checked on what the page shows (its own one-thread run),
    not on a run of this test's own."""
    return page_run.printed_by_the_build


def test_the_timings_show_what_the_page_reads_from_them(shown, page):
    said = shown("timing-demo")
    per_pass = re.findall(r"^  (.+?) +([\d.]+) ms per pass$", said, re.M)
    ms = {name: float(value) / 1000 for name, value in per_pass}
    assert set(ms) == {"workers=0", "workers=1", "workers=2", "workers=0, step", "workers=1, step", "preloaded tensor"}
    assert ms["workers=0"] > 100 * ms["preloaded tensor"]  # "far slower than a preloaded tensor"
    assert 20e-6 < ms["workers=0"] / len(page.half) < 1e-3  # "a fraction of a millisecond per item"
    step = float(re.search(r"a step: (\d+) ms, a batch's loading without workers", said)[1]) / 1000
    stepping = step * len(page.loaders[0])
    assert 0.5 < stepping / ms["workers=0"] < 2  # timed on a first pass: "as long as loading a batch"
    # without a worker, the sum of loading and stepping: about twice workers=0
    assert ms["workers=0, step"] > 0.9 * (ms["workers=0"] + stepping)
    # with one, about the slower of the two, far less than the sum
    slower = max(ms["workers=1"], stepping)
    assert ms["workers=1, step"] < 1.5 * slower and ms["workers=1, step"] < 0.8 * ms["workers=0, step"]
    # "a fraction of a second with fork"
    found = re.search(r"starting 3 workers \((\w+)\) and 3 first batches: ([\d.]+) s", said)
    assert found[1] == "fork" and float(found[2]) < 1


def test_the_cores_printed_are_the_cores_this_process_may_use(printed):
    cores = int(re.search(r"899 images, (\d+) cores; the fastest of 3 passes:", printed)[1])
    assert cores == len(os.sched_getaffinity(0))


def test_a_pass_waits_the_step_after_every_batch():
    started = time.perf_counter()
    assert w.seconds_per_pass([1, 2, 3], step_seconds=0.02) >= 0.06
    assert time.perf_counter() - started >= 0.06


def draws_of(printed):
    draws = {}
    for line in printed.splitlines():
        name, _, values = line.partition(":")
        if name.strip() in ("0 workers", "2 workers", "fixed", "epoch 2", "again"):
            draws[name.strip()] = ast.literal_eval(values.strip())
    return draws


def test_the_worker_random_number_bug_and_its_fix(page_run):
    draws = draws_of(page_run.printed_by("worker-seeding-demo"))
    assert len(set(draws["0 workers"])) == 8
    buggy = draws["2 workers"]
    assert buggy[0:2] == buggy[2:4] and buggy[4:6] == buggy[6:8]  # worker 0 and worker 1 drew the same numbers
    assert len(set(draws["fixed"])) == 8 and draws["fixed"] == draws["again"]
    assert set(draws["fixed"]).isdisjoint(draws["epoch 2"])  # every epoch: new numbers
    assert isinstance(page_run.names_after("worker-seeding-demo").loader.dataset, Subset)  # "wrapped in a Subset"


def loaded(dataset, seed=0, **options):
    loader = DataLoader(dataset, batch_size=2, num_workers=2, generator=torch.Generator().manual_seed(seed), **options)
    return torch.cat(list(loader)).tolist()


def set_the_outermost_datasets_rng(worker_id):
    """The fix the page warns against: a worker_init_fn that sets an attribute of the loader's dataset."""
    worker = get_worker_info()
    worker.dataset.rng = w.np.random.default_rng(worker.seed)


def test_the_fix_works_through_wrappers_where_a_worker_init_fn_would_not():
    wrapped = ConcatDataset([Subset(w.WorkerSeededDigits(size=4), range(4)), w.WorkerSeededDigits(size=4, seed=1)])
    assert len(set(loaded(wrapped))) == 8
    pairs = loaded(Subset(w.NoisyDigits(), range(8)), worker_init_fn=set_the_outermost_datasets_rng)
    assert pairs[0:2] == pairs[2:4]  # the Subset got the generator; the dataset inside still draws in pairs
    assert len(set(loaded(w.NoisyDigits(), worker_init_fn=set_the_outermost_datasets_rng))) == 8  # unwrapped: fixed


def test_the_fix_draws_from_its_own_seed_in_the_main_process():
    dataset = w.WorkerSeededDigits(size=3, seed=7)
    assert [dataset[i] for i in range(3)] == w.np.random.default_rng(7).random(3).tolist()
    assert loaded(w.WorkerSeededDigits(), seed=0) != loaded(w.WorkerSeededDigits(), seed=1)  # seeds from the loader


class WhatAWorkerDraws(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        worker = get_worker_info()
        return worker.id, worker.seed == torch.initial_seed(), random.random(), w.np.random.random()


def test_pytorch_seeds_torch_random_and_numpy_differently_in_each_worker():
    """'PyTorch seeds its own generator and Python's random differently in every worker (and NumPy's global
    np.random too)'; 'torch.initial_seed() inside the worker is the same number' as get_worker_info().seed."""
    batches = DataLoader(WhatAWorkerDraws(), batch_size=2, num_workers=2)
    items = [item for batch in batches for item in zip(*batch)]
    by_worker = {int(worker): (bool(same), float(python), float(numpy)) for worker, same, python, numpy in items}
    assert set(by_worker) == {0, 1} and all(same for same, _, _ in by_worker.values())
    assert by_worker[0][1] != by_worker[1][1] and by_worker[0][2] != by_worker[1][2]


def test_each_worker_prepares_two_batches_ahead_by_default():
    assert DataLoader(range(4), num_workers=1).prefetch_factor == 2


def test_the_guard_is_needed_and_sufficient_with_forkserver_and_spawn(shown):
    said = shown("start-methods")
    guarded = re.search(r"guarded.py with forkserver: exit code 0\n((?:  epoch .*\n){2})", said)
    epochs = re.findall(r"epoch \d: \[\[0.0, 1.0, 2.0\], \[3.0, 4.0, 5.0\]\] in ([\d.]+) s", guarded[1])
    # "each epoch of the guarded one waits for its worker several times as long as fork takes to start three"
    fork = float(re.search(r"starting 3 workers \(fork\) and 3 first batches: ([\d.]+) s", shown("timing-demo"))[1])
    assert len(epochs) == 2 and all(float(seconds) > 2 * fork for seconds in epochs)
    for method in ("forkserver", "spawn"):
        failed = re.search(rf"unguarded.py with {method}: exit code 1\n  (.*)\nthe worker said: (.*\n.*)\n", said)
        assert failed[1] == "RuntimeError: DataLoader worker exited unexpectedly"
        assert "before the current process has finished its bootstrapping phase." in " ".join(failed[2].split())


def test_a_lambda_cannot_be_sent_to_a_new_interpreter_and_torch_says_why(page_run):
    said = page_run.printed_by("picklable")
    flat = " ".join(said.split())
    assert "PicklingError: Can't pickle <function <lambda>>" in flat and "0x" not in said  # no address
    assert "UserWarning: Got pickle error when attempting to start a worker Process." in flat
    assert "set_start_method('fork')" in flat  # the hint the page's prose follows


def test_a_worker_copies_a_list_it_reads_and_not_an_array(page, printed):
    copied = dict(re.findall(r"reading the (list of str|array of bytes), the worker copied (\d+) MB", printed))
    assert int(copied["list of str"]) >= 10 and int(copied["array of bytes"]) <= 1
    sizes = re.search(r"300,000 names: (\d+) MB as a list of str, (\d+) MB as an array of bytes", printed)
    assert int(sizes[2]) * 3 < int(sizes[1])  # bytes: far smaller than the list
    assert page.as_bytes.dtype.kind == "S"
    text = w.np.array(page.names)  # NumPy's text type: 4 bytes a character, about the list's size
    assert text.nbytes > 0.8 * int(sizes[1]) * 2**20


def test_a_dead_worker_a_stuck_one_and_an_exception_are_reported(shown):
    said = shown("worker-failures")
    lines = said.splitlines()
    reported = {}
    for number, line in enumerate(lines):
        found = re.match(r"(Crashes|Hangs|Fails), after ([\d.]+) s:", line)
        if found:
            reported[found[1]] = (float(found[2]), lines[number + 1].strip())
    assert reported["Crashes"][1] == "RuntimeError: DataLoader worker exited unexpectedly"
    assert reported["Hangs"][1] == "RuntimeError: DataLoader timed out after 1 seconds"
    assert reported["Fails"][1] == "ValueError: Caught ValueError in DataLoader worker process 0."
    assert "  ...ending: ValueError: item 5: no label" in said
    # in the main thread the crash is seen at once, the stuck worker at the timeout; the time is read before the
    # clean-up, which waits for the stuck worker to wake (1.5 s after it took the item)
    assert reported["Crashes"][0] < 1 <= reported["Hangs"][0] < 1.5


def test_a_loader_without_workers_refuses_a_timeout():
    """Why the page says 'rerun with num_workers=0 (and no timeout)'."""
    with pytest.raises(AssertionError, match="requires timeout == 0"):
        next(iter(DataLoader(range(4), num_workers=0, timeout=1)))
    assert "`num_workers=0` (and no `timeout`" in (DOCS / "workers.md").read_text()


class NeedsTwo(Exception):
    """An exception that cannot be made from one string."""

    def __init__(self, path, line):
        super().__init__(f"{path}:{line}: bad row")


class WithAttribute(ValueError):
    path = None


class RaisesIn(Dataset):
    def __init__(self, make):
        self.make = make

    def __len__(self):
        return 2

    def __getitem__(self, index):
        raise self.make()


def make_with_attribute():
    error = WithAttribute("bad row")
    error.path = "labels.csv"
    return error


def raised_in_a_worker(dataset):
    """The exception a loop over ``dataset`` with one worker raises, its traceback dropped (the loader goes at once)."""
    try:
        next(iter(DataLoader(dataset, num_workers=1)))
    except Exception as error:
        error.__traceback__ = None
        return error
    raise AssertionError("nothing was raised")


def test_a_workers_exception_is_rebuilt_from_its_message():
    """'Of the same type where the type can be made from one string, otherwise a RuntimeError; attributes lost.'"""
    error = raised_in_a_worker(RaisesIn(lambda: NeedsTwo("labels.csv", 3)))
    assert type(error) is RuntimeError and "Caught NeedsTwo in DataLoader worker process 0" in str(error)
    assert "labels.csv:3: bad row" in str(error)
    error = raised_in_a_worker(RaisesIn(make_with_attribute))
    assert type(error) is WithAttribute and error.path is None  # the attribute set in the worker did not come back


def test_a_workers_exception_keeps_its_loader_alive_until_the_traceback_goes(page):
    def fail():
        batches = iter(DataLoader(page.Fails(), batch_size=2, num_workers=2))
        alive = weakref.ref(batches)
        try:
            list(batches)
        except ValueError as error:
            return alive, error

    alive, error = fail()
    del error
    leaked = alive()
    assert leaked is not None  # a reference cycle: only the garbage collector would free it
    leaked._shutdown_workers()  # (what its clean-up does, without the wait)
    del leaked
    gc.collect()
    alive, error = fail()
    error.__traceback__ = None  # as the page does
    del error
    assert alive() is None


def test_exercises(page_run):
    said = page_run.printed_by("exercise-persistent")
    first, second = (ast.literal_eval(re.search(rf"epoch {n}: (\[.*\])", said)[1]) for n in (1, 2))
    assert len(set(first)) == 8 and set(first).isdisjoint(second)  # new numbers every epoch, no pairs
    assert "a new loader, epoch 1 again: True" in said
    assert page_run.names_after("exercise-persistent").loader.persistent_workers
    assert "worker of each item, by batch: [[0, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 1]]" in page_run.printed


class SlowFirst(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        if index == 0:
            time.sleep(0.3)  # batch 0 is ready after batch 1
        return index


def test_the_loader_hands_out_batches_in_order_unless_told_otherwise():
    assert [b.tolist() for b in DataLoader(SlowFirst(), batch_size=2, num_workers=2)] == [[0, 1], [2, 3]]
    loader = DataLoader(SlowFirst(), batch_size=2, num_workers=2, in_order=False)
    assert [b.tolist() for b in loader][0] == [2, 3]


def test_the_data_chapter_and_this_one_link_to_each_other():
    assert "(workers.md" in (DOCS / "data.md").read_text() and "(data.md" in (DOCS / "workers.md").read_text()
