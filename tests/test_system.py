"""``tamdeploy.system`` and ``inspect --system``: the CPU's instruction sets read from /proc/cpuinfo."""

from __future__ import annotations

from helpers.cli import invoke

from tamdeploy.system import system_info

ZEN3 = "processor: 0\nmodel name\t: AMD EPYC 7763\nflags\t\t: fpu sse2 avx avx2 fma\n"
ZEN4 = "model name\t: AMD EPYC 9454\nflags\t\t: avx2 avx512f avx512_vnni avx512_bf16\n"
SAPPHIRE = "model name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile\n"


def info_for(tmp_path, text):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return system_info(path)


def test_cpu_classes_and_the_advice_they_get(tmp_path):
    zen3, zen4, spr = (info_for(tmp_path, t) for t in (ZEN3, ZEN4, SAPPHIRE))
    assert (zen3.cpu, zen3.isa, zen3.has_vnni, zen3.has_bf16) == ("AMD EPYC 7763", ["AVX2"], False, False)
    assert "keep FP32" in zen3.advice()
    assert zen4.isa == ["AVX2", "AVX-512", "AVX512-VNNI", "AVX512-BF16"] and zen4.has_vnni and zen4.has_bf16
    assert spr.isa[-2:] == ["AMX-BF16", "AMX-INT8"] and "OpenVINO INT8 or BF16" in spr.advice()


def test_no_cpuinfo_means_unknown_not_a_crash(tmp_path):
    info = system_info(tmp_path / "missing")
    assert info.isa == [] and info.advice() == "CPU features unknown on this platform"


def test_inspect_system_reports_the_runtimes_installed():
    result = invoke("inspect", "--system", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert {"torch", "onnxruntime", "openvino"} <= set(report["runtimes"])
    assert report["logical_cores"] >= 1 and isinstance(report["isa"], list) and report["advice"]


def test_inspect_without_a_checkpoint_says_what_to_give():
    result = invoke("inspect")
    assert result.exit_code == 2 and "pass --system" in result.stderr
