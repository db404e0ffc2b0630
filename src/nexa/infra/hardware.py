"""Hardware detection: what this machine can train on, printed before a run and recorded in its manifest.

The training layer uses it to choose precision (bf16 only where the device supports it) and to
fill the manifest's ``gpu_type`` in the spec's form (``H100x1``, or ``cpu``).
"""

from __future__ import annotations

import os
import platform

from pydantic import BaseModel, ConfigDict, Field


class Hardware(BaseModel):
    """One snapshot of the local accelerator(s), CPU and memory."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(description="cuda, mps or cpu")
    gpu_name: str | None = None
    gpu_count: int = 0
    gpu_memory_gb: float | None = Field(None, description="Memory of the first GPU.")
    cpu_count: int
    memory_gb: float | None = Field(None, description="Total system memory.")
    bf16: bool = Field(description="Whether bf16 training is supported on `device`.")
    fp16: bool
    platform: str

    @property
    def gpu_type(self) -> str:
        """``cpu`` or ``<model>x<count>`` as the cost table and RunManifest expect."""
        if not self.gpu_name:
            return "cpu"
        words = self.gpu_name.replace("-", " ").split()
        model = next((w for w in words if any(c.isdigit() for c in w)), words[-1])
        return f"{model}x{self.gpu_count}"

    def rows(self) -> list[tuple[str, str]]:
        """Label/value pairs for a Rich table."""
        gpu = f"{self.gpu_name} ×{self.gpu_count} ({self.gpu_memory_gb:.0f} GB)" if self.gpu_name else "none"
        memory = f"{self.memory_gb:.1f} GB" if self.memory_gb else "unknown"
        return [("device", self.device), ("gpu", gpu), ("cpus", str(self.cpu_count)), ("memory", memory),
                ("bf16", str(self.bf16)), ("fp16", str(self.fp16)), ("gpu_type", self.gpu_type)]


def detect_hardware() -> Hardware:
    """Ask torch about accelerators and the OS about CPUs and memory."""
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return Hardware(device="cuda", gpu_name=props.name, gpu_count=torch.cuda.device_count(),
                        gpu_memory_gb=round(props.total_memory / 2**30, 2), cpu_count=cpus, memory_gb=_system_memory_gb(),
                        bf16=torch.cuda.is_bf16_supported(), fp16=True, platform=platform.platform())
    mps = getattr(torch.backends, "mps", None)
    device = "mps" if mps is not None and mps.is_available() else "cpu"
    return Hardware(device=device, cpu_count=cpus, memory_gb=_system_memory_gb(), bf16=_cpu_bf16(torch) if device == "cpu" else False,
                    fp16=device == "mps", platform=platform.platform())


def _cpu_bf16(torch) -> bool:
    """bf16 on CPU works where torch can run a bf16 matmul (slow without AMX/AVX512-BF16, but correct)."""
    try:
        torch.ones(2, 2, dtype=torch.bfloat16) @ torch.ones(2, 2, dtype=torch.bfloat16)
    except RuntimeError:
        return False
    return True


def _system_memory_gb() -> float | None:
    """Total memory from /proc/meminfo (Linux) or sysconf; None where neither is available."""
    if os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 2)
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 2)
    return None
