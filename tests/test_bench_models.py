"""Smoke test of bench/bench_models.py: the geometry collection, the memory method, and one tiny
run of every part in --quick mode. No timing is asserted: only that the harness measures, checks
and reports what it says it does."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

try:  # a torchvision built for another torch fails at import with a RuntimeError, not only
    import torchvision  # noqa: F401  ImportError: either way the benchmark cannot run here
except Exception as e:  # noqa: BLE001
    pytest.skip(f"bench_models.py needs torchvision (the bench extra): {e}",
                allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_models as bm  # noqa: E402


def _conv_outputs(model: nn.Module, size: int) -> dict[str, tuple[int, ...]]:
    """Each nn.Conv2d's output shape in one forward: what the geometry's output size must match."""
    shapes, handles = {}, []
    for name, m in model.named_modules():
        if type(m) is nn.Conv2d:
            handles.append(m.register_forward_hook(
                lambda mod, args, out, name=name: shapes.__setitem__(name, tuple(out.shape))))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return shapes


def test_resnet18_geometries():
    model = bm.build_model("resnet18")
    layers = bm.collect_layers(model)
    # 1 stem + 8 basic blocks x 2 convs + 3 downsampling 1x1s; the 3x3s of one stage share one
    # geometry, except each stage's first (stride 2 and the previous stage's channels).
    assert sum(L.count for L in layers) == 20
    assert len(layers) == 11
    by = {(L.geometry.cin, L.geometry.cout, L.geometry.kh, L.geometry.stride, L.geometry.h): L
          for L in layers}
    stem = by[(3, 64, 7, (2, 2), 224)]
    assert (stem.count, stem.geometry.padding, stem.geometry.out_hw) == (1, (3, 3), (112, 112))
    assert by[(64, 64, 3, (1, 1), 56)].count == 4
    assert by[(512, 512, 3, (1, 1), 7)].count == 3
    assert by[(256, 512, 1, (2, 2), 14)].names == ["layer4.0.downsample.0"]
    assert all(not L.geometry.bias for L in layers)
    out = _conv_outputs(model, 224)
    for L in layers:
        for name in L.names:
            assert out[name][2:] == L.geometry.out_hw, name


def test_mobilenet_v2_geometries():
    model = bm.build_model("mobilenet_v2")
    layers = bm.collect_layers(model)
    assert sum(L.count for L in layers) == sum(type(m) is nn.Conv2d for m in model.modules())
    assert sum(L.count for L in layers) == 52
    assert len({L.geometry for L in layers}) == len(layers)
    depthwise_s2 = [L for L in layers if L.geometry.groups == L.geometry.cin > 1
                    and L.geometry.stride == (2, 2)]
    assert depthwise_s2 and all("dw" in L.geometry.label() for L in depthwise_s2)
    out = _conv_outputs(model, 224)
    for L in layers:
        for name in L.names:
            assert out[name][2:] == L.geometry.out_hw, name


def test_scratch_measurement_sees_a_temporary_buffer():
    """48 MiB is above glibc's largest mmap threshold, so it is mapped and unmapped per call
    even in this process (the benchmark's child fixes the threshold at 64 KiB)."""
    def temporary():
        buf = torch.ones(12 * 2**20)  # 48 MiB, touched, then freed before returning
        return buf[:4].clone()

    big, _ = bm._scratch_of(temporary)
    small, _ = bm._scratch_of(lambda: torch.ones(4))
    assert big >= 44 * 2**20
    assert small < 8 * 2**20


def test_ops_agree_with_aten_on_a_strided_grouped_geometry():
    g = bm.Geometry(cin=4, cout=6, kh=3, kw=2, stride=(2, 1), padding=(1, 0), dilation=(1, 2),
                    groups=2, h=9, w=8, bias=True)
    for layout in bm.LAYOUTS:
        t = bm.make_tensors(g, 2, layout)
        for op in bm.OPS:
            ours, ref = bm.call(op, "ours", t), bm.call(op, "torch", t)
            assert bm.mismatch(ours, ref) is None, (layout, op)
            assert bm.mismatch(ours + 1e-2 * ref.abs().max(), ref) is not None


def test_quick_run_writes_every_part(tmp_path):
    # One thread: on a loaded machine every 2-thread parallel region waits for a time slice,
    # which turns this smoke test's second into a minute. The run sets torch's thread count
    # for the whole process, so put it back.
    threads = torch.get_num_threads()
    try:
        rc = bm.main(["--quick", "--model", "resnet18", "--layers", "2", "--batch", "2",
                      "--size", "32", "--whole", "all", "--threads", "1",
                      "--results-dir", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    md = sorted(tmp_path.glob("models-quick-*.md"))
    assert len(md) == 1 and not list(tmp_path.glob("models-latest*"))
    text = md[0].read_text()
    for needle in ("## Whole models", "## Layers", "## Scratch memory per op",
                   "3->64 7x7/2 p3 on 32x32", "weighted by n", "channels_last", "load average"):
        assert needle in text, needle
    data = json.loads(md[0].with_suffix(".json").read_text())
    res = data["models"]["resnet18"]["results"]
    assert set(res) == {"contiguous", "channels_last"}
    for rows in res.values():
        assert len(rows) == 2
        for row in rows:
            assert set(row) == set(bm.OPS)
            for r in row.values():
                assert r["error"] is None
                assert math.isfinite(r["ours"]) and r["ours"] > 0 and r["torch"] > 0
    assert len(data["whole"]) == 4  # infer and train, two layouts
    assert all(w["check"].startswith("ok") for w in data["whole"])
    assert len(data["memory"]) == 2 * 2 * 3  # layers x layouts x ops
    assert all(isinstance(e["ours"], int) and isinstance(e["torch"], int)
               for e in data["memory"])


def test_bad_choices_are_refused():
    with pytest.raises(SystemExit):
        bm.main(["--ops", "fwd,backward"])
    with pytest.raises(SystemExit):
        bm.main(["--model", "vgg11"])
    threads = torch.get_num_threads()
    with pytest.raises(SystemExit):
        bm.main(["--cpu-time", "--threads", "2"])
    assert torch.get_num_threads() == threads  # refused before touching the thread count


def test_cpu_time_clock_on_one_thread(tmp_path):
    threads = torch.get_num_threads()
    try:
        rc = bm.main(["--quick", "--model", "resnet18", "--layers", "1", "--ops", "fwd",
                      "--layouts", "contiguous", "--batch", "1", "--size", "32", "--threads",
                      "1", "--cpu-time", "--no-memory", "--results-dir", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    text = next(tmp_path.glob("models-quick-*.md")).read_text()
    assert "**process CPU time**" in text and "weighted by n" in text
