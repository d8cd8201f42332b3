"""The LIF membrane kernel as a native PyTorch loop (``fused_lif``).

``kernels.lif.membrane`` written for eager execution: the forward pass is
three operations per step (multiply-add, comparison, reset), written into
preallocated outputs, without autograd recording each step; the backward
pass is the adjoint recurrence of ``kernels.lif.membrane_gradients`` (one
multiply-add per step, the other factors for blocks of steps at once).  It
stores the voltages before the reset, one float32 per neuron and step.
"""

import torch


def _forward_loop(u, a, theta, v0, reset, vp, counts):
    """Fill ``vp`` and ``counts`` step by step; return ``v_T``.

    ``vp[:, t]`` gets ``v'_t = a v_{t-1} + u_t`` and ``counts[:, t]`` gets
    ``z_t = H(v'_t - theta)``.  Three operations a step (the multiply-add,
    the comparison and the reset), each writing into a buffer allocated
    once: in eager PyTorch the cost of a step is mostly the dispatch of its
    operations.
    """
    v = torch.empty_like(v0)
    previous = v0
    for t in range(u.shape[1]):
        current = torch.addcmul(u[:, t], previous, a, out=vp[:, t])
        spiked = torch.ge(current, theta, out=counts[:, t])
        if reset == "subtract":  # v = v' - theta z
            previous = torch.addcmul(current, spiked, theta, value=-1.0, out=v)
        elif reset == "zero":  # v = v' (1 - z)
            previous = torch.addcmul(current, spiked, current, value=-1.0, out=v)
        else:
            previous = current
    return previous.clone() if reset == "none" else previous


#: Values per block of steps in the backward pass: a block's temporaries
#: (about ten of them) stay in the CPU's cache, and there are few enough
#: blocks that their operations' dispatch is cheap (16 x 512 neurons, 500
#: steps, one thread: 2**17 was the fastest of 2**14 to 2**22).
_BLOCK_VALUES = 1 << 17


def _blocks(steps, width):
    """``(begin, end)`` of the blocks of steps, last block first."""
    size = max(1, _BLOCK_VALUES // max(1, width))
    return [(b, min(steps, b + size)) for b in range(0, steps, size)][::-1]


def _after_reset(vp, theta, reset):
    """The voltage after the same-step reset of the voltages ``vp``."""
    if reset == "subtract":
        return torch.where(vp >= theta, vp - theta, vp)
    if reset == "zero":
        return vp.masked_fill(vp >= theta, 0.0)
    return vp


def _block_factors(vp, theta, derivative, reset, detach_reset, need_z):
    """``(s, z, k, c)`` of a block (see ``kernels.lif.membrane_gradients``).

    ``z`` is None unless ``need_z`` or the reset needs it.
    """
    w = vp - theta
    z = (w >= 0).to(vp.dtype) if need_z or reset == "zero" else None
    s = derivative(w)
    if reset == "subtract":
        c = None if detach_reset else -theta
        k = torch.ones_like(s) if c is None else torch.addcmul(torch.ones_like(s), s, c)
    elif reset == "zero":
        c = None if detach_reset else -vp
        k = 1.0 - z if c is None else torch.addcmul(1.0 - z, s, c)
    else:
        c, k = None, torch.ones_like(s)
    return s, z, k, c


def _backward(vp, a, theta, v0, g_counts, g_last, config, need_a, need_theta):
    """The gradients of ``u``, ``a``, ``theta`` and ``v0``, block by block.

    With ``g_t`` the gradient of the voltage after step ``t``'s reset, the
    adjoint recurrence is ``g_{t-1} = a (k_t g_t + s_t gz_t)``: one
    multiply-add a step once the block's factors ``a k_t`` and ``a s_t
    gz_t`` are computed for all its steps at once; then the block's
    ``lambda_t = k_t g_t + s_t gz_t`` (the gradient of ``u_t``) and its share
    of the parameter gradients (those ``need_a`` and ``need_theta`` ask
    for; None for the others), again for all its steps at once.
    ``config`` is ``(derivative, reset, detach_reset)``.
    """
    derivative, reset, detach_reset = config
    batch, steps, units = vp.shape
    lam = torch.empty_like(vp)
    g_a = torch.zeros_like(a) if need_a else None
    g_theta = torch.zeros_like(theta) if need_theta else None
    g = g_last  # gradient of the voltage after the last step
    for begin, end in _blocks(steps, batch * units):
        block = vp[:, begin:end]
        gz = g_counts[:, begin:end]
        s, z, k, c = _block_factors(
            block, theta, derivative, reset, detach_reset, need_theta
        )
        e = s * gz
        ak, ae = k * a, e * a
        g_v = torch.empty_like(block)  # g_t for the block's steps
        g_v[:, -1] = g
        for t in range(end - begin - 1, 0, -1):
            g = torch.addcmul(ae[:, t], ak[:, t], g, out=g_v[:, t - 1])
        g = torch.addcmul(ae[:, 0], ak[:, 0], g)  # g of the step before the block
        lam_block = torch.addcmul(e, k, g_v, out=lam[:, begin:end])
        if need_theta:
            g_z = gz if c is None else torch.addcmul(gz, c, g_v)
            change = s.mul_(g_z)
            if reset == "subtract":
                change.addcmul_(z, g_v)
            g_theta.sub_(change.sum((0, 1)))
        if not need_a:
            continue
        if begin:
            previous = _after_reset(vp[:, begin - 1 : end - 1], theta, reset)
        else:
            previous = torch.cat(
                [v0.unsqueeze(1), _after_reset(block[:, :-1], theta, reset)], 1
            )
        g_a.add_((lam_block * previous).sum((0, 1)))
    return lam, g_a, g_theta, g


def _function(surrogate, reset, detach_reset):
    """An autograd Function for one configuration (cached per configuration)."""

    class _Membrane(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, a, theta, v0):
            vp, counts = torch.empty_like(u), torch.empty_like(u)
            v_last = _forward_loop(u, a, theta, v0, reset, vp, counts)
            ctx.save_for_backward(vp, a, theta, v0)
            return counts, v_last

        @staticmethod
        def backward(ctx, g_counts, g_last):
            vp, a, theta, v0 = ctx.saved_tensors
            return _backward(
                vp,
                a,
                theta,
                v0,
                g_counts,
                g_last,
                (surrogate.derivative, reset, detach_reset),
                need_a=ctx.needs_input_grad[1],
                need_theta=ctx.needs_input_grad[2],
            )

    return _Membrane.apply


_FUNCTIONS = {}


def fused_lif(u, gain, a, theta, v0, surrogate, reset, detach_reset):
    """``kernels.lif.membrane``'s outputs, natively, with their gradient.

    None where the generic form must run (while tracing for export, other
    dtypes).  The gain multiplies the input before the loop (autograd
    differentiates it): in eager mode that is the same one pass either way.
    """
    if torch.jit.is_tracing() or u.dtype != torch.float32:
        return None
    if gain is not None:
        u = u * gain
    from keras_spiking.kernels.lif import surrogate_key

    key = (surrogate_key(surrogate), reset, detach_reset)
    function = _FUNCTIONS.get(key)
    if function is None:
        function = _FUNCTIONS[key] = _function(surrogate, reset, detach_reset)
    a, theta = (torch.broadcast_to(p, u.shape[2:]) for p in (a, theta))
    return function(u, a, theta, v0)
