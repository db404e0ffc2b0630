"""Hardware detection: a consistent snapshot and the spec's gpu_type form."""

from __future__ import annotations

import torch

from nexa.infra.hardware import Hardware, detect_hardware


def test_detect_hardware_matches_torch():
    hw = detect_hardware()
    assert hw.cpu_count >= 1 and (hw.memory_gb is None or hw.memory_gb > 0)
    if torch.cuda.is_available():
        assert hw.device == "cuda" and hw.gpu_count == torch.cuda.device_count() and hw.gpu_type != "cpu"
    else:
        assert hw.gpu_count == 0 and hw.gpu_type == "cpu" and hw.fp16 is (hw.device == "mps")
    labels = [label for label, _ in hw.rows()]
    assert labels[:2] == ["device", "gpu"] and "bf16" in labels


def test_gpu_type_is_model_times_count():
    hw = Hardware(device="cuda", gpu_name="NVIDIA H100 80GB HBM3", gpu_count=2, gpu_memory_gb=79.6, cpu_count=16,
                  memory_gb=128.0, bf16=True, fp16=True, platform="linux")
    assert hw.gpu_type == "H100x2"
