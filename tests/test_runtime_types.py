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
