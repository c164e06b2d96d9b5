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


def _vendor_stand_in(calls: list, new: str, record: str, wait: str):
    """A driver module with the three event calls stream_wait makes, each logged as (name, args) and
    answering success (status 0); `new` hands out "event100", "event101", ..."""
    import itertools
    import types
    events = (f"event{i}" for i in itertools.count(100))

    def logged(call, answer=None):
        def f(*args):
            calls.append((call, args))
            return (0, next(answer)) if answer is not None else (0,)
        return f
    return types.SimpleNamespace(**{new: logged(new, events), record: logged(record), wait: logged(wait)})


@pytest.mark.parametrize("vendor", ["cuda", "hip"])
def test_stream_wait_records_on_the_producer_and_waits_on_the_consumer_with_one_event_a_device(vendor):
    """Backend.stream_wait (an operand's interface names another stream): an event recorded on that stream,
    waited on by the launch stream, never the host; one event a device, made once. Both vendors' real
    classes, their driver modules stood in for (the GPU test checks the ordering itself)."""
    import types

    from jitgemm.runtime.cuda import CudaBackend
    from jitgemm.runtime.hip import HipBackend
    calls: list = []
    if vendor == "cuda":
        be = CudaBackend()
        names = ("cuEventCreate", "cuEventRecord", "cuStreamWaitEvent")
        drv = _vendor_stand_in(calls, *names)
        drv.CUevent_flags = types.SimpleNamespace(CU_EVENT_DISABLE_TIMING=2)
        be._driver = drv
    else:
        be = HipBackend()
        names = ("hipEventCreateWithFlags", "hipEventRecord", "hipStreamWaitEvent")
        hip = _vendor_stand_in(calls, *names)
        hip.hipEventDisableTiming = 2
        be._mod = lambda: hip
    current = []
    be.make_current = current.append
    be.stream_wait(0x10, 0x20, 0)
    be.stream_wait(0x30, 0x40, 0)
    be.stream_wait(0x10, 0x20, 1)
    new, record, wait = names
    assert current == [0, 0, 1]
    assert calls == [(new, (2,)), (record, ("event100", 0x20)), (wait, (0x10, "event100", 0)),
                     (record, ("event100", 0x40)), (wait, (0x30, "event100", 0)),
                     (new, (2,)), (record, ("event101", 0x20)), (wait, (0x10, "event101", 0))]


@pytest.mark.parametrize("driver_version,want", [(12020, "cuLaunchKernel"), (12030, "cuLaunchKernelEx"),
                                                 (13000, "cuLaunchKernelEx")])
def test_programmatic_dependent_launch_only_from_the_driver_that_graphs_it(driver_version, want):
    """CudaBackend: a launch asked for with programmatic dependent launch goes through cuLaunchKernelEx (the PDL
    attribute, the call's stream) on a driver from CUDA 12.3 (PDL_MIN_DRIVER), a plain cuLaunchKernel before it;
    both the bound launcher and the one-off launch; a plain launch stays plain. The driver module stood in for."""
    import types

    from jitgemm.runtime.cuda import CudaBackend
    calls: list = []

    def logged(name):
        def f(*args):  # the stream as it is at the call: cuLaunchKernelEx's rides in its (reused) config
            calls.append((name, args, args[0].hStream if name.endswith("Ex") else args[8]))
            return (0,)
        return f
    drv = types.SimpleNamespace(
        cuDriverGetVersion=lambda: (0, driver_version), cuCtxGetCurrent=lambda: (0, 7),
        cuLaunchKernel=logged("cuLaunchKernel"), cuLaunchKernelEx=logged("cuLaunchKernelEx"),
        CUresult=types.SimpleNamespace(CUDA_SUCCESS=0),
        CUlaunchAttribute=lambda: types.SimpleNamespace(value=types.SimpleNamespace()),
        CUlaunchAttributeID=types.SimpleNamespace(CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION=6),
        CUlaunchConfig=types.SimpleNamespace)
    be = CudaBackend()
    be._driver, be._ctx = drv, {0: 7}
    be.make_current = lambda device: None
    args = types.SimpleNamespace(address=1234)
    be.launcher("f", (3, 1, 1), (128, 1, 1), 0, args, 0, pdl=True)(0x55)
    be.launch("f", (3, 1, 1), (128, 1, 1), 0, 0x66, args, 0, pdl=True)
    be.launcher("f", (3, 1, 1), (128, 1, 1), 0, args, 0, pdl=False)(0x77)
    assert [c[0] for c in calls] == [want, want, "cuLaunchKernel"]
    if want == "cuLaunchKernelEx":
        cfg = calls[0][1][0]
        assert (cfg.gridDimX, cfg.blockDimX, cfg.numAttrs) == (3, 128, 1)
        assert cfg.attrs[0].value.programmaticStreamSerializationAllowed == 1
        assert calls[0][1][1:] == ("f", 1234, 0)
    assert [c[2] for c in calls] == [0x55, 0x66, 0x77]  # each launch on its call's stream
