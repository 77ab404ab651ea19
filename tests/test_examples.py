"""The examples with pictures: the demo's edge detection on a photograph, and LeNet-5 on the
digits (examples/train_digits.py), each through its functions rather than a subprocess.

They need the examples extra (matplotlib, scikit-learn), which `make test` installs; without it
they are skipped.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

EXTRA = "needs the examples extra: pip install 'corr2d_ext[examples]'"
pytest.importorskip("matplotlib", reason=EXTRA)
pytest.importorskip("sklearn", reason=EXTRA)

import corr2d_ext  # noqa: E402
from corr2d_ext import __main__ as demo  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def load_example(name: str):
    """examples/<name>.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photo():
    rgb, gray = demo.load_photo()
    return rgb, gray


def test_photo_is_the_shipped_grayscale_picture(photo):
    rgb, gray = photo
    assert rgb.shape == (427, 640, 3) and rgb.dtype == torch.uint8
    assert gray.shape == (427, 640) and gray.dtype == torch.float32
    assert 0 <= gray.min() < 0.1 and 0.9 < gray.max() <= 1


def test_photo_edge_maps_are_conv2d_with_the_tutorial_kernels(photo, tmp_path):
    rgb, gray = photo
    maps = demo.edge_maps(gray)
    vertical, horizontal, learned = maps.values()
    K = torch.tensor([[1.0, -1.0]])
    torch.testing.assert_close(vertical[0], K)
    torch.testing.assert_close(horizontal[0], K.t())
    torch.testing.assert_close(learned[0], torch.tensor(demo.LAPLACIAN), rtol=0, atol=1e-3)
    for kernel, edge in maps.values():
        expected = F.conv2d(gray[None, None], kernel[None, None])[0, 0]
        torch.testing.assert_close(edge, expected, rtol=1e-5, atol=1e-5)
    # As in the tutorial: the transposed kernel on the photo is the kernel on the transposed photo.
    assert torch.equal(horizontal[1], corr2d_ext.corr2d(gray.t().contiguous(), K).t())

    path = demo.save_figure(rgb, maps, tmp_path / "edges.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 10_000  # a picture, not an empty canvas


def test_demo_runs_end_to_end_and_says_where_the_picture_is(tmp_path, capsys):
    out = tmp_path / "sub" / "edges.png"
    assert demo.main(["--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    assert "All of the tutorial's results reproduced." in printed


def test_demo_without_the_extra_runs_the_tutorial_and_says_how_to_get_the_picture(
        tmp_path, capsys, monkeypatch):
    for name in ("sklearn", "sklearn.datasets"):  # importing them now raises ImportError
        monkeypatch.setitem(sys.modules, name, None)
    out = tmp_path / "edges.png"
    assert demo.main(["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Skipped edge detection on a photograph" in printed
    assert "pip install 'corr2d_ext[examples]'" in printed
    assert "All of the tutorial's results reproduced." in printed
    assert not out.exists()


def test_digits_one_short_epoch_learns_and_both_convolutions_agree(tmp_path, num_threads):
    train_digits = load_example("train_digits")
    torch.set_num_threads(1)  # as the script does: tiny ops, and the cores may be shared
    # float64, so that the two models (the same weights and batches) can be held to rounding.
    results = train_digits.run(epochs=1, train_subset=480, batch_size=8, dtype=torch.float64,
                               progress=False, log=lambda *_: None)
    ours, theirs = results["corr2d_ext.Conv2d"], results["nn.Conv2d"]
    assert results["config"]["train_images"] == 480 and results["config"]["test_images"] == 360
    assert len(ours["losses"]) == len(theirs["losses"]) == 480 // 8
    torch.testing.assert_close(torch.tensor(ours["losses"]), torch.tensor(theirs["losses"]),
                               rtol=1e-9, atol=1e-12)
    for (name, a), b in zip(ours["model"].state_dict().items(),
                            theirs["model"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=lambda m: f"{name}: {m}")
    assert ours["accuracy"] == theirs["accuracy"]
    assert ours["accuracy"][-1] > 50  # 10% is chance; one short epoch gets well past it
    assert ours["losses"][-1] < ours["losses"][0]

    png = train_digits.save_figure(results, tmp_path / "digits.png")
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    text = train_digits.summary(results)
    assert "| `corr2d_ext.Conv2d` |" in text and "| `nn.Conv2d` |" in text
