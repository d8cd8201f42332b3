"""PyTorch shim (see ``keras_spiking.backend``)."""

import torch

from keras_spiking.backend import _common
from keras_spiking.backend._common import add_initial
from keras_spiking.backend._torch_lif import fused_lif  # noqa: F401

# shared with another backend (see _common)
compiled = _common.not_compiled
residue = _common.residue
scan = _common.scan
uniform = _common.uniform
replica_batch_offset = _common.no_replica_offset


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, surrogate, value):
        return value.view_as(value)

    @staticmethod
    def backward(ctx, upstream):
        return upstream, None


def straight_through(surrogate, value):
    """Return ``value``; send the incoming gradient to ``surrogate``.

    ``value`` must have the shape and dtype of ``surrogate``; it gets no
    gradient, so whatever computed it keeps no state for backprop.
    """
    return _StraightThrough.apply(surrogate, value)


def custom_vjp(forward, backward):
    """A function of tensors with a hand-written gradient.

    ``forward(*args) -> (output, residuals)`` and
    ``backward(residuals, upstream) -> gradients`` (one per argument);
    ``output`` may be a tuple of tensors, and ``upstream`` is then the tuple
    of their gradients.  ``forward`` runs without autograd tracking (so it
    may work in place on its own temporaries); residuals go through
    ``save_for_backward``.
    """

    class _Function(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            output, residuals = forward(*args)
            ctx.save_for_backward(*residuals)
            return output

        @staticmethod
        def backward(ctx, *upstream):
            upstream = upstream[0] if len(upstream) == 1 else upstream
            return tuple(backward(ctx.saved_tensors, upstream))

    return _Function.apply


def chunk_cumsum(x, initial=None, reverse=False, overwrite=False):
    """Running sum along axis 2 of a rank-4 tensor of short chunks.

    ``initial`` (rank 3, without axis 2) is added to the first element of
    each chunk (the last with ``reverse``) before summing.  Chunks are short
    (a few steps): one in-place add per step on a strided view is several
    times faster on CPU than ``torch.cumsum`` over a middle axis.  With
    ``overwrite=True`` the sum is taken in ``x``'s memory (the caller must
    own ``x``, not need it again, and not track it with autograd).
    """
    if torch.jit.is_tracing():  # export (ONNX): no in-place updates of views
        x = add_initial(x, initial, reverse)
        if reverse:
            return torch.flip(torch.cumsum(torch.flip(x, [2]), 2), [2])
        return torch.cumsum(x, 2)
    y = x if overwrite else x.clone()
    steps = y.shape[2]
    if initial is not None:
        y[:, :, steps - 1 if reverse else 0] += initial
    if reverse:
        for c in range(steps - 2, -1, -1):
            y[:, :, c] += y[:, :, c + 1]
    else:
        for c in range(1, steps):
            y[:, :, c] += y[:, :, c - 1]
    return y


def loop_is_cheaper(kind, steps, width):
    """Whether a loop over ``steps`` beats the chunked kernels.

    For filters, always: ``fused_lowpass`` is a native loop of one
    ``addcmul`` per step, cheaper than the chunked kernels' dozens of
    full-size operations (benchmarks/bench_layers.py).  For spikes, never:
    ``fused_spikes`` is vectorised, and a loop would pay several operations
    per step.
    """
    del steps, width
    # not while tracing for export: the native loop does not apply there,
    # and an unrolled graph of every step would be huge
    return kind == "filter" and not torch.jit.is_tracing()


def unroll(steps):
    """Whether a loop over ``steps`` (static) steps is unrolled.

    Always (eager: a Python loop is the loop).
    """
    del steps
    return True


def _running_sum_mod(q, start, chunk, levels, bits):
    """``(start + inclusive running sum of q along axis 1) mod 2**bits``.

    int32, as ``kernels.spikes._running_sum_mod`` computes it (chunked running sums
    of 2**bits-bounded values, so no int32 sum overflows), written as few
    in-place passes over the data.
    """
    mask = (1 << bits) - 1
    batch, steps, units = q.shape
    if levels == 0:
        total = torch.cumsum(q, 1, dtype=torch.int32)
        total += start.unsqueeze(1)
        return total.bitwise_and_(mask)
    count = -(-steps // chunk)
    total = q.new_empty((batch, count * chunk, units))
    if count * chunk > steps:
        total[:, steps:] = 0
    view = total.view(batch, count, chunk, units)
    source = q.view(batch, count, chunk, units) if count * chunk == steps else None
    if source is None:
        total[:, :steps] = q
        source = view
    else:
        view[:, :, 0] = source[:, :, 0]
    for c in range(1, chunk):  # the running sum within each chunk
        torch.add(view[:, :, c - 1], source[:, :, c], out=view[:, :, c])
    ends = view[:, :, -1].bitwise_and(mask)
    ends = _running_sum_mod(ends, start, chunk, levels - 1, bits)
    before = torch.cat([start.unsqueeze(1), ends[:, :-1]], 1)
    view += before.unsqueeze(2)
    return total[:, :steps].bitwise_and_(mask)


#: Values per block of the eager kernels (1 MB of float32).  A block's dozen
#: temporaries stay in the CPU's cache and in memory glibc keeps: larger
#: temporaries, freed together at the end of a call, are handed back to the
#: system and their pages faulted in afresh on the next call, which costs
#: more than the arithmetic (the spiking and lowpass layers of
#: ``benchmarks/bench_layers.py``, forward on one thread at (32, 1000, 128):
#: 25 ms in blocks of 2**18 values, 57 ms in blocks of 2**22).
_BLOCK_VALUES = 1 << 18


def _blocks(steps, width):
    """``(begin, end)`` of the blocks of steps the eager kernels take.

    ``width`` values per step; see ``_BLOCK_VALUES``.
    """
    size = max(1, _BLOCK_VALUES // max(1, width))
    return [(begin, min(steps, begin + size)) for begin in range(0, steps, size)]


def _spike_block(rates, dt, start, chunk, levels, bits):
    """Spikes and final fixed-point voltage of one block (see fused_spikes)."""
    one = float(1 << bits)
    x = rates * dt
    nearest = torch.round(x)
    rest = x.sub_(nearest).mul_(one).round_()  # x - round(x), in fixed point
    signed = rest.to(torch.int32)
    q = signed.bitwise_and((1 << bits) - 1)  # two's complement: mod 2**bits
    voltage = _running_sum_mod(q, start, chunk, levels, bits)
    # n = round(x) + [v < q] - [signed < 0]; ``signed >> 31`` is -1 where < 0
    extra = signed.bitwise_right_shift_(31).add_(torch.lt(voltage, q))
    return nearest.add_(rest.copy_(extra)).div_(dt), voltage[:, -1]


def fused_spikes(rates, dt, v0, chunk, levels, bits, levels_for):
    """``kernels.spike_train`` in eager PyTorch.

    For the ``direct`` (``levels == 0``) and ``chunked`` forms: the same
    fixed-point arithmetic (so the same spikes, bit for bit), in about
    fifteen passes over the data, most of them in place, instead of some
    sixty ``keras.ops`` calls with their casts and temporaries.  Long
    sequences go in blocks of steps (``_blocks``), the fixed-point voltage
    carried exactly from block to block, each block with
    ``levels_for(steps)`` levels (the kernels' own rule,
    ``kernels.plan._levels_for``).  Returns None where the generic form must run
    (while tracing for export, under autograd, or for other dtypes).
    """
    if (
        torch.jit.is_tracing()
        or rates.requires_grad
        or rates.dtype != torch.float32
        or (torch.is_tensor(dt) and dt.requires_grad)
    ):
        return None
    one = float(1 << bits)
    start = (v0 - torch.floor(v0)).mul_(one).round_().to(torch.int32)
    blocks = _blocks(rates.shape[1], rates.shape[0] * rates.shape[2])
    if len(blocks) == 1:
        spikes, start = _spike_block(rates, dt, start, chunk, levels, bits)
    else:
        spikes = torch.empty_like(rates)
        for begin, end in blocks:
            spikes[:, begin:end], start = _spike_block(
                rates[:, begin:end], dt, start, chunk, levels_for(end - begin), bits
            )
    final = start.to(torch.float32).mul_(1.0 / one)
    return spikes, final.clamp_max_(1.0 - 2.0**-24)


#: Largest float32: ``abs(x) <= _FLOAT32_MAX`` is false for nan and inf.
_FLOAT32_MAX = 3.4028234663852886e38


def _chunk_maps_(a, low, high, floor, span):
    """Inclusive compositions of level maps along axis 2, in place.

    The maps ``(a, low, high)`` (``kernels.integrate_and_fire._then``) are rank-4 int32
    tensors, written over; ``low is None``: the maps ``(a, floor, 0)`` (new
    ``low``/``high`` tensors are returned); ``a`` saturates at ``+-span``.
    """
    if low is None:
        low, high = torch.empty_like(a), torch.empty_like(a)
        low[:, :, 0], high[:, :, 0] = floor, 0
        for c in range(1, a.shape[2]):
            a_c = a[:, :, c]
            torch.add(low[:, :, c - 1], a_c, out=low[:, :, c]).clamp_(floor, 0)
            torch.add(high[:, :, c - 1], a_c, out=high[:, :, c]).clamp_(floor, 0)
            a_c.add_(a[:, :, c - 1]).clamp_(-span, span)
        return a, low, high
    for c in range(1, a.shape[2]):
        a_c, low_c, high_c = a[:, :, c], low[:, :, c], high[:, :, c]
        new_low = (low[:, :, c - 1] + a_c).clamp_(low_c, high_c)
        high_c.copy_((high[:, :, c - 1] + a_c).clamp_(low_c, high_c))
        low_c.copy_(new_low)
        a_c.add_(a[:, :, c - 1]).clamp_(-span, span)
    return a, low, high


def _levels_after(a, low, high, level0, chunk, levels, floor, span):
    """``kernels.integrate_and_fire._levels_after`` in place-friendly PyTorch.

    The int32 level after each map ``(a, low, high)`` along axis 1 (``low
    is None``: the maps ``(a, floor, 0)`` of single steps), from ``level0``.
    """
    batch, steps, units = a.shape
    if levels == 0:  # a few maps: one after the other
        out = torch.empty_like(a)
        level = level0
        for j in range(steps):
            if low is None:
                level = torch.add(level, a[:, j], out=out[:, j]).clamp_(floor, 0)
            else:
                level = torch.add(level, a[:, j], out=out[:, j])
                level.clamp_(low[:, j], high[:, j])
        return out
    count = -(-steps // chunk)

    # padded after with zeros: see kernels.integrate_and_fire._levels_after
    def to_chunks(v):
        padded = v.new_zeros((batch, count * chunk, units))
        padded[:, :steps] = v
        return padded.view(batch, count, chunk, units)

    a, low, high = _chunk_maps_(
        to_chunks(a),
        None if low is None else to_chunks(low),
        None if high is None else to_chunks(high),
        floor,
        span,
    )
    ends = _levels_after(
        a[:, :, -1],
        low[:, :, -1],
        high[:, :, -1],
        level0,
        chunk,
        levels - 1,
        floor,
        span,
    )
    a += torch.cat([level0.unsqueeze(1), ends[:, :-1]], 1).unsqueeze(2)
    level = a.clamp_(low, high)
    return level.view(batch, count * chunk, units)[:, :steps]


def fused_fire(counts, level0, floor, span, chunk, levels, levels_for):
    """The integer part of ``kernels.integrate_fire`` in eager PyTorch.

    From the signed counts on: the same compositions of int32 level maps
    (``kernels.integrate_and_fire._then``; levels from ``floor``, maps saturating at
    ``+-span``), so the same spikes and states bit for bit, as in-place
    passes over strided views instead of the ``keras.ops`` forms with their
    temporaries.  Long sequences go in blocks of steps (``_blocks``), the
    level carried from block to block, each block with
    ``levels_for(steps)`` levels.  Returns None where the generic form must
    run (while tracing for export: no in-place updates of views there;
    under autograd).
    """
    if torch.jit.is_tracing() or counts.requires_grad:
        return None
    floor, span = int(floor), int(span)  # int32 here (exact, as float32 there)
    # as kernels.integrate_and_fire._fire_kernel: the initial level may be above 0; a
    # non-finite step leaves the level alone and outputs relu of itself
    level = level0.clamp(floor, -floor).to(torch.int32)
    finite = counts.abs() <= _FLOAT32_MAX
    d = torch.where(finite, counts.clamp(-span, span), 0.0).to(torch.int32)
    blocks = _blocks(d.shape[1], d.shape[0] * d.shape[2])
    before = torch.empty_like(d)
    for begin, end in blocks:
        block_levels = levels if len(blocks) == 1 else levels_for(end - begin)
        after = _levels_after(
            d[:, begin:end], None, None, level, chunk, block_levels, floor, span
        )
        before[:, begin] = level
        before[:, begin + 1 : end] = after[:, :-1]
        level = after[:, -1]
    # n_t = max(L_{t-1} + D_t, 0) (nan stays nan, -inf gives 0)
    fired = torch.where(finite, before.to(torch.float32).add_(counts), counts)
    return fired.clamp_min_(0), level.to(torch.float32)


class _Lowpass(torch.autograd.Function):
    """``y_t = a y_{t-1} + (1 - a) x_t``, one ``addcmul`` per step.

    Written into the output in place; the backward pass is the adjoint
    recurrence backwards in time (as ``kernels.lowpass``'s hand-written
    gradient).
    """

    @staticmethod
    def forward(ctx, x, log_a, y0):
        a, b = torch.exp(log_a), -torch.expm1(log_a)
        y = torch.empty_like(x)
        previous = y0
        for begin, end in _blocks(x.shape[1], x.shape[0] * x.shape[2]):
            u = x[:, begin:end] * b  # a block at a time: see _blocks
            for t in range(end - begin):
                previous = torch.addcmul(u[:, t], previous, a, out=y[:, begin + t])
        ctx.save_for_backward(x, log_a, y0, y)
        return y

    @staticmethod
    def backward(ctx, upstream):
        x, log_a, y0, y = ctx.saved_tensors
        a = torch.exp(log_a)
        lam = torch.empty_like(upstream)
        following = torch.zeros_like(y0)
        for t in range(upstream.shape[1] - 1, -1, -1):  # lam_t = g_t + a lam_{t+1}
            following = torch.addcmul(upstream[:, t], following, a, out=lam[:, t])
        # d y_t / d log_a (holding y_{t-1}) = a (y_{t-1} - x_t)
        change = torch.cat([y0.unsqueeze(1), y[:, :-1]], 1).sub_(x).mul_(lam)
        grad_log_a = change.sum((0, 1)).mul_(a)
        grad_y0 = lam[:, 0] * a
        return lam.mul_(-torch.expm1(log_a)), grad_log_a, grad_y0


def fused_lowpass(x, log_a, y0):
    """``kernels.lowpass`` as a native eager loop (``_Lowpass``).

    None where the generic form must run (while tracing for export, other
    dtypes).
    """
    if torch.jit.is_tracing() or x.dtype != torch.float32:
        return None
    return _Lowpass.apply(x, log_a, y0)
