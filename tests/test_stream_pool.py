"""Outputs jitgemm allocates itself (no out=, operands its own DeviceArrays or interface wrappers) take their
memory from per-stream blocks (jitgemm.stream_pool), on the recording stand-in backend: a dropped output's
block is reused by the next output of its stream without a driver allocation or free (the driver's free
waits for the whole device), never by another stream's, never while the stream captures a graph, and
blocks past the idle limit go back to the driver."""
import gc

import pytest

import jitgemm
from jitgemm import pipeline, stream_pool
from jitgemm.device_array import DeviceArray
from jitgemm.errors import JitgemmError
from jitgemm.runtime.backend import installed
from jitgemm.runtime.null import NullBackend

N, M, K = 4, 64, 128


@pytest.fixture
def fake():
    with installed(NullBackend()) as be:
        yield be


def operands(be):
    return DeviceArray(be, 0, (N, K), "bfloat16"), DeviceArray(be, 0, (M, K), "bfloat16")


def out_pointer(be):
    return be.launches[-1][3][0]  # the packed arguments start with the output's pointer


def test_a_dropped_output_is_reused_by_its_stream_without_driver_calls(fake):
    x, w = operands(fake)
    y = jitgemm.gemm(x, w, stream=0x5000)
    assert isinstance(y, DeviceArray) and y.stream == 0x5000 and y.shape == (N, M)
    first, allocs = y.ptr, fake.calls["alloc"]
    del y
    gc.collect()
    assert stream_pool.idle_bytes(fake, 0) == stream_pool.rounded(N * M * 2)
    for _ in range(3):  # each output dropped before the next call: one block serves them all
        y = jitgemm.gemm(x, w, stream=0x5000)
        assert y.ptr == first and out_pointer(fake) == first
        del y
    assert fake.calls["alloc"] == allocs, "a reused block still asked the driver"
    assert len(fake._buffers) == 3, "x, w and the one output block"


def test_blocks_are_not_shared_between_streams(fake):
    x, w = operands(fake)
    y = jitgemm.gemm(x, w, stream=0x5000)
    a = y.ptr
    del y
    z = jitgemm.gemm(x, w, stream=0x6000)  # an idle block of another stream: its old work may still run
    assert z.ptr != a and z.stream == 0x6000
    y = jitgemm.gemm(x, w, stream=0x5000)
    assert y.ptr == a


def test_live_outputs_never_share_a_block(fake):
    x, w = operands(fake)
    ys = [jitgemm.gemm(x, w, stream=0) for _ in range(4)]
    assert len({y.ptr for y in ys}) == 4


def test_no_block_is_handed_out_while_the_stream_captures(fake, monkeypatch):
    x, w = operands(fake)
    y = jitgemm.gemm(x, w, stream=0x5000)
    del y  # an idle block the capture must not take
    monkeypatch.setattr(fake, "stream_capturing", lambda stream, device: stream == 0x5000)
    launches = len(fake.launches)
    with pytest.raises(JitgemmError, match="stream 0x5000 captures a graph .* pass out="):
        jitgemm.gemm(x, w, stream=0x5000)
    assert len(fake.launches) == launches
    o = DeviceArray(fake, 0, (N, M), "bfloat16")
    assert jitgemm.gemm(x, w, out=o, stream=0x5000) is o  # with out= the capture goes on


def test_idle_blocks_past_the_limit_go_back_to_the_driver(fake, monkeypatch):
    monkeypatch.setattr(stream_pool, "IDLE_LIMIT", 2 * stream_pool.rounded(N * M * 2))
    x, w = operands(fake)
    ys = [jitgemm.gemm(x, w, stream=0) for _ in range(5)]
    held = len(fake._buffers)
    del ys
    gc.collect()
    assert stream_pool.idle_bytes(fake, 0) == 2 * stream_pool.rounded(N * M * 2)
    assert len(fake._buffers) == held - 3, "three blocks past the limit were not freed"


def test_free_idle_memory_frees_what_is_idle_only(fake):
    x, w = operands(fake)
    keep = jitgemm.gemm(x, w, stream=0)
    drop = [jitgemm.gemm(x, w, stream=s) for s in (0, 0x5000)]
    held = len(fake._buffers)
    del drop
    assert jitgemm.free_idle_memory() == 2 * stream_pool.rounded(N * M * 2)
    assert len(fake._buffers) == held - 2 and not stream_pool.idle_bytes(fake, 0)
    assert jitgemm.free_idle_memory() == 0 and keep.ptr in fake._buffers


def test_swapping_the_backend_releases_idle_blocks():
    with installed(NullBackend()) as be:
        x, w = operands(be)
        del x, w  # buffers made without a stream: freed at once
        y = jitgemm.gemm(*operands(be), stream=0)
        del y
        gc.collect()
        assert len(be._buffers) == 1 and stream_pool.idle_bytes(be, 0)
    assert not be._buffers and not stream_pool.idle_bytes(be, 0)
    pipeline.clear()


def test_host_path_buffers_are_the_drivers_own(fake):
    """numpy calls upload, launch, synchronise and download: their buffers are freed at once, not kept."""
    import numpy as np
    jitgemm.gemm(np.ones((N, K), np.float16), np.ones((M, K), np.float16))
    gc.collect()
    assert not fake._buffers and not stream_pool.idle_bytes(fake, 0)


def test_threads_never_hold_the_same_block(fake):
    """Eight threads, each on its own stream (two share one), make and drop outputs at once; at each barrier
    every output alive across all threads has a block of its own."""
    import threading
    x, w = operands(fake)
    jitgemm.gemm(x, w, stream=0)  # planned once, outside the race
    rounds, threads = 4, 8
    barrier = threading.Barrier(threads)
    live: list[list] = [[] for _ in range(threads)]
    seen_dupes, errors = [], []

    def worker(i):
        try:
            stream = 0x1000 * (1 + i // 2)  # threads 2j and 2j + 1 share a stream
            for _ in range(rounds):
                for _ in range(20):  # churn: blocks go back and come out again
                    jitgemm.gemm(x, w, stream=stream)
                live[i] = [jitgemm.gemm(x, w, stream=stream) for _ in range(3)]
                if barrier.wait() == 0:
                    ptrs = [y.ptr for held in live for y in held]
                    if len(ptrs) != len(set(ptrs)):
                        seen_dupes.append(len(ptrs) - len(set(ptrs)))
                barrier.wait()
                live[i] = []
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
            barrier.abort()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and not seen_dupes


def test_an_output_names_its_stream_and_the_next_call_runs_there(fake):
    """A DeviceArray output carries the stream it was made on in its __cuda_array_interface__ (v3: 0, the
    legacy default stream, exported as 1), so CuPy or Numba order their reads after the kernel, and a
    stream=None call that takes it as x runs on that stream too (on stream 0 it could read it unwritten)."""
    x, w = operands(fake)
    w2 = DeviceArray(fake, 0, (M, M), "bfloat16")
    assert "stream" not in x.__cuda_array_interface__  # uploaded synchronously: nothing to wait for
    y = jitgemm.gemm(x, w, stream=0x5000)
    assert y.__cuda_array_interface__["stream"] == 0x5000
    for _ in range(2):  # cold, then the cached entry
        z = jitgemm.gemm(y, w2)
        assert fake.launches[-1][1] == 0x5000 and z.stream == 0x5000
    assert jitgemm.gemm(x, w, stream=0).__cuda_array_interface__["stream"] == 1
    y0 = jitgemm.gemm(x, w, stream=0)
    jitgemm.gemm(y0, w2)
    assert fake.launches[-1][1] == 0


def test_to_numpy_waits_for_the_stream_the_output_was_made_on(fake):
    x, w = operands(fake)
    y = jitgemm.gemm(x, w, stream=0x5000)
    synced = fake.calls["stream_synchronize"]
    assert y.to_numpy().shape == (N, M)
    assert fake.calls["stream_synchronize"] == synced + 1
    y0 = jitgemm.gemm(x, w, stream=0)  # the legacy default stream: the copy follows it already
    y0.to_numpy()
    assert fake.calls["stream_synchronize"] == synced + 1
