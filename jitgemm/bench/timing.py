"""Device timers (CuPy events): back-to-back launches on one stream, and graph replay."""
from __future__ import annotations

import statistics
from typing import Callable

# launches per timed loop; operands.n_copies keeps no more weight copies than the longer loop touches
B2B_CALLS = 60
GRAPH_CALLS = 24


def back_to_back(launch: Callable[[int], None], stream, calls: int = B2B_CALLS, reps: int = 5) -> float:
    """Median over reps of (event time of `calls` launches in a row) / calls, in microseconds.
    `launch(i)` enqueues call i on `stream` (rotating over cold weight copies)."""
    import cupy as cp
    for i in range(5):
        launch(i)
    stream.synchronize()
    times = []
    for _ in range(reps):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record(stream)
        for i in range(calls):
            launch(i)
        b.record(stream)
        b.synchronize()
        times.append(cp.cuda.get_elapsed_time(a, b) * 1e3 / calls)
    return statistics.median(times)


def graph_replay(launch: Callable[[int], None], stream, calls: int = GRAPH_CALLS, reps: int = 5) -> float:
    """Median over reps of (replay time of a graph of `calls` launches) / calls, in microseconds."""
    import cupy as cp
    launch(0)
    stream.synchronize()
    stream.begin_capture()
    try:
        for i in range(calls):
            launch(i)
    finally:
        graph = stream.end_capture()
    graph.launch(stream)
    stream.synchronize()
    times = []
    for _ in range(reps):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record(stream)
        graph.launch(stream)
        b.record(stream)
        b.synchronize()
        times.append(cp.cuda.get_elapsed_time(a, b) * 1e3 / calls)
    return statistics.median(times)


def torch_graph_replay(launch: Callable[[int], None], calls: int = GRAPH_CALLS, reps: int = 5) -> float:
    """The same measurement for torch baselines, captured with torch's own graph API."""
    import torch
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        for i in range(3):
            launch(i)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):
        for i in range(calls):
            launch(i)
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()  # replays on the current stream
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / calls)
    return statistics.median(times)
