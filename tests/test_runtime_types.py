"""runtime.types: the values every backend shares (CPU only)."""
import pytest

from jitgemm.runtime.types import DeviceInfo, DeviceInfos


def _info(index):
    return DeviceInfo(index=index, name=f"gpu{index}", arch="sm_90a", multiprocessors=132, warp_size=32,
                      shared_per_block=232448, l2_bytes=60 << 20, memory_bytes=141 << 30)


def test_device_infos_reads_each_device_once_and_refuses_an_index_out_of_range():
    counted, read = [], []

    def count():
        counted.append(1)
        return 2

    def reader(index):
        read.append(index)
        return _info(index)

    infos = DeviceInfos("CUDA", count, reader)
    assert infos(1) is infos(1)
    assert infos(0).name == "gpu0"
    assert read == [1, 0] and len(counted) == 2  # a known device asks neither the count nor the vendor again
    for bad in (2, -1):
        with pytest.raises(ValueError, match=rf"device index {bad} out of range: 2 CUDA device\(s\)"):
            infos(bad)
    assert read == [1, 0]


def test_every_backend_has_every_method_of_the_protocol():
    """jitgemm calls a backend only through the Backend protocol's methods; one a vendor's class lacks
    fails only on that vendor's machines (HipBackend had no stream_capturing, which autotune and output
    allocation ask). Checked on fresh objects: none loads its driver before a method needs it."""
    import inspect

    from jitgemm.runtime.backend import Backend
    from jitgemm.runtime.cuda import CudaBackend
    from jitgemm.runtime.hip import HipBackend
    from jitgemm.runtime.null import NullBackend
    wanted = {n for n, f in vars(Backend).items() if inspect.isfunction(f) and not n.startswith("_")}
    assert {"launch", "alloc", "free", "stream_capturing"} <= wanted
    for be in (CudaBackend(), HipBackend(), NullBackend()):
        name = type(be).__name__
        missing = sorted(n for n in wanted if not callable(getattr(be, n, None)))
        assert not missing, f"{name} lacks {missing}"
        for n in wanted:  # the same parameters, so a call written against the protocol binds
            want = list(inspect.signature(getattr(Backend, n)).parameters)[1:]  # less self
            got = list(inspect.signature(getattr(be, n)).parameters)
            assert got[:len(want)] == want, f"{name}.{n}{got} against the protocol's {want}"
