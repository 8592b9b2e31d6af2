"""GPU memory from torch.cuda and utilisation, temperature and power from NVML (nvidia-ml-py).

Nothing here initialises CUDA: a run on the CPU, or one that has not touched the GPU yet, reads
nothing. A machine without NVIDIA's library or driver reads the torch.cuda numbers only.
"""

from __future__ import annotations

import torch

from advisor import reading_names as rn

GIB = float(1 << 30)
_NO_GPU_ERRORS = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded", "NVMLError_NoPermission")


class HardwareReader:
    def __init__(self) -> None:
        self._nvml = None  # the pynvml module once initialised; False once known to be unavailable
        self._handles: dict[int, object] = {}
        self.note: str | None = None  # why NVML readings are absent, when that is not just "no GPU"

    def read(self, device: torch.device | None) -> dict[str, float]:
        if device is None or device.type != "cuda" or not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return {}
        index = device.index if device.index is not None else torch.cuda.current_device()
        out = {
            rn.GPU_MEM_ALLOCATED_GB: torch.cuda.memory_allocated(index) / GIB,
            rn.GPU_MEM_RESERVED_GB: torch.cuda.memory_reserved(index) / GIB,
            rn.GPU_MEM_PEAK_GB: torch.cuda.max_memory_allocated(index) / GIB,
            rn.GPU_MEM_TOTAL_GB: torch.cuda.get_device_properties(index).total_memory / GIB,
        }
        handle = self._handle(index)
        if handle is not None:
            out.update(self._nvml_readings(handle))
        return out

    def _handle(self, index: int):
        if self._nvml is False:
            return None
        if self._nvml is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception as exc:  # ImportError, or no library/driver: NVML readings are simply absent
                self._nvml = False
                if type(exc).__name__ not in _NO_GPU_ERRORS and not isinstance(exc, ImportError):
                    self.note = f"NVML unavailable: {type(exc).__name__}: {exc}"
                return None
        if index not in self._handles:
            nvml = self._nvml
            try:
                # NVML numbers all GPUs; CUDA_VISIBLE_DEVICES may renumber them, so match by UUID.
                uuid = str(torch.cuda.get_device_properties(index).uuid)
                uuid = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
                self._handles[index] = nvml.nvmlDeviceGetHandleByUUID(uuid)
            except Exception:
                try:
                    self._handles[index] = nvml.nvmlDeviceGetHandleByIndex(index)
                except Exception as exc:
                    self.note = f"NVML has no handle for cuda:{index}: {exc}"
                    self._handles[index] = None
        return self._handles[index]

    def _nvml_readings(self, handle) -> dict[str, float]:
        nvml = self._nvml
        out: dict[str, float] = {}
        probes = {
            rn.GPU_UTILIZATION: lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            rn.GPU_TEMPERATURE_C: lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
            rn.GPU_POWER_W: lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
        }
        for name, read in probes.items():
            try:
                out[name] = read()
            except Exception:  # NotSupported on some boards (power on many consumer cards): leave it out
                pass
        return out

    def close(self) -> None:
        if self._nvml:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
        self._nvml = None
        self._handles = {}
