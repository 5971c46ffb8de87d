"""What this machine offers a deployed model: the CPU's instruction sets that decide which precision
pays off (AVX2, AVX-512, VNNI for INT8, BF16, AMX), and the runtimes installed.

Read without importing any runtime (``importlib.metadata`` and ``/proc/cpuinfo``), so ``bench`` and
``inspect --system`` can print it cheaply. Only Linux exposes the flags this way; elsewhere the ISA
list is empty and says so.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

# /proc/cpuinfo flag -> what we call it, in the order the advice reads them
ISA_FLAGS = {
    "avx2": "AVX2", "avx512f": "AVX-512", "avx_vnni": "AVX-VNNI", "avx512_vnni": "AVX512-VNNI",
    "avx512_bf16": "AVX512-BF16", "avx512_fp16": "AVX512-FP16", "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8",
}
RUNTIMES = ("torch", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "triton")


@dataclass(frozen=True)
class SystemInfo:
    cpu: str
    logical_cores: int
    isa: list[str]
    runtimes: dict[str, str] = field(default_factory=dict)

    @property
    def has_vnni(self) -> bool:
        return any(name in self.isa for name in ("AVX-VNNI", "AVX512-VNNI", "AMX-INT8"))

    @property
    def has_bf16(self) -> bool:
        return any(name in self.isa for name in ("AVX512-BF16", "AMX-BF16"))

    def advice(self) -> str:
        """Which CPU path pays off here, from what the benchmarks measured on each CPU class."""
        extra = "" if "openvino" in self.runtimes else ' (pip install "tamdeploy[openvino]" for the fast CPU path)'
        if self.has_vnni and self.has_bf16:
            return "INT8 (VNNI/AMX) and BF16 run natively: OpenVINO INT8 or BF16 is the fast CPU path" + extra
        if self.has_vnni:
            return "INT8 runs natively (VNNI); no native BF16: OpenVINO INT8 is the fast CPU path" + extra
        if self.isa:
            return "no VNNI or BF16: keep FP32 (ONNX Runtime or OpenVINO f32); INT8/FP16 are for size here" + extra
        return "CPU features unknown on this platform"

    def to_dict(self) -> dict:
        return {**asdict(self), "has_vnni": self.has_vnni, "has_bf16": self.has_bf16, "advice": self.advice()}

    def describe(self) -> str:
        isa = ", ".join(self.isa) if self.isa else "unknown"
        return f"{self.cpu}, {self.logical_cores} logical cores; ISA: {isa}"


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    try:
        text = path.read_text()
    except OSError:
        return platform.processor() or platform.machine(), set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model or platform.machine(), flags


def installed_runtimes() -> dict[str, str]:
    found = {}
    for name in RUNTIMES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def system_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> SystemInfo:
    model, flags = _cpuinfo(cpuinfo)
    isa = [label for flag, label in ISA_FLAGS.items() if flag in flags]
    return SystemInfo(cpu=model, logical_cores=os.cpu_count() or 1, isa=isa, runtimes=installed_runtimes())
