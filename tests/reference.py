"""A reference for NaN and Inf: F.conv2d's definition, summed term by term, without BLAS.

F.conv2d correlates the zero-padded input: every tap of every output is a term, and a tap that
lands in the padding multiplies the weight by a zero that is part of the input. Under IEEE
arithmetic 0 * Inf is NaN, so an Inf or NaN weight makes the padded border NaN, and an Inf or
NaN in grad_output makes the weight gradient NaN wherever it met padding. The input gradient has
no such terms: padding has no gradient, and no output exists between strided outputs.

That is what F.conv2d computes in float64 on the CPU (its im2col path), term for term
(test_numerics.py checks the two against each other). Its float32 path does not always agree
with itself: oneDNN skips the padding in some geometries, and its strided input gradient
multiplies zeros that it inserts between outputs. A sum whose terms include NaN, or +Inf and
-Inf, is NaN, and one with only +Inf is +Inf, in any order of addition: so the NaN and Inf
positions here are exact for any kernel's summation order (with moderate finite values, which
cannot overflow).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _taps(size, out, tap, stride, dilation):
    """The outputs whose tap `tap` lands inside an (already padded) input, and where."""
    o = torch.arange(out)
    i = o * stride + tap * dilation
    inside = i < size
    return o[inside], i[inside]


def sum_of_terms(input, weight, bias, grad_output, stride, padding, dilation, groups):
    """(output, grad_input, grad_weight, grad_bias) of F.conv2d in float64, each summed term by
    term as F.conv2d's definition has it (padding zeros included where they are terms).

    input (N, C, H, W), weight (O, C / groups, kH, kW), bias (O,) or None, grad_output
    (N, O, H_out, W_out); stride, padding and dilation are pairs. grad_bias is None without a
    bias.
    """
    ph, pw = padding
    x = F.pad(input.double(), (pw, pw, ph, ph))  # the padding's zeros, as terms
    w, gy = weight.double(), grad_output.double()
    n, c, h, wd = x.shape
    o, c_g, kh_n, kw_n = w.shape
    o_g = o // groups
    h_out = output_size(h, kh_n, stride[0], 0, dilation[0])
    w_out = output_size(wd, kw_n, stride[1], 0, dilation[1])
    assert gy.shape == (n, o, h_out, w_out), (gy.shape, (n, o, h_out, w_out))
    y = torch.zeros(n, o, h_out, w_out, dtype=torch.float64)
    gx, gw = torch.zeros_like(x), torch.zeros_like(w)
    for kh in range(kh_n):
        oh, ih = _taps(h, h_out, kh, stride[0], dilation[0])
        for kw in range(kw_n):
            ow, iw = _taps(wd, w_out, kw, stride[1], dilation[1])
            for g in range(groups):
                cs, os_ = slice(g * c_g, (g + 1) * c_g), slice(g * o_g, (g + 1) * o_g)
                xs = x[:, cs][:, :, ih][:, :, :, iw]            # (N, C/g, h, w): inputs read
                ws = w[os_, :, kh, kw][None, :, :, None, None]  # (1, O/g, C/g, 1, 1)
                gys = gy[:, os_][:, :, oh][:, :, :, ow]         # (N, O/g, h, w)
                # Within one tap, distinct outputs read distinct inputs: no index repeats.
                y[:, os_, oh[:, None], ow[None, :]] += (ws * xs[:, None]).sum(2)
                gx[:, cs, ih[:, None], iw[None, :]] += (ws * gys[:, :, None]).sum(1)
                gw[os_, :, kh, kw] += (gys[:, :, None] * xs[:, None]).sum((0, 3, 4))
    gx = gx[:, :, ph:ph + input.shape[2], pw:pw + input.shape[3]]  # padding has no gradient
    gb = None
    if bias is not None:
        y += bias.double().view(1, -1, 1, 1)
        gb = gy.sum((0, 2, 3))
    return y, gx, gw, gb


def special_positions(t: torch.Tensor):
    """Where t is NaN, +Inf and -Inf."""
    return torch.isnan(t), torch.isposinf(t), torch.isneginf(t)


def same_specials(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a and b have NaN, +Inf and -Inf at the same positions."""
    return a.shape == b.shape and all(
        torch.equal(p, q) for p, q in zip(special_positions(a), special_positions(b)))


def describe_specials(a: torch.Tensor, b: torch.Tensor) -> str:
    """Where a's NaN and Inf differ from b's, for an assertion message."""
    if a.shape != b.shape:
        return f"shapes {tuple(a.shape)} and {tuple(b.shape)}"
    lines = []
    for name, p, q in zip(("NaN", "+Inf", "-Inf"), special_positions(a), special_positions(b)):
        if not torch.equal(p, q):
            only_a, only_b = (p & ~q).nonzero().tolist(), (q & ~p).nonzero().tolist()
            lines.append(f"{name}: {len(only_a)} only in ours (e.g. {only_a[:3]}), "
                         f"{len(only_b)} only in the reference (e.g. {only_b[:3]})")
    return "; ".join(lines)
