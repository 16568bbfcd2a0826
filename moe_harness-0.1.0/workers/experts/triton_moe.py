"""The ``triton`` experts path: two fused Triton kernels over the experts a step actually touches.

Design (the layout of vLLM's ``fused_moe``, reduced to what transformers' MoE families need):

1. Sort the T*k slots by expert (sentinel slots, index ``>= E``, sort last and belong to no block).
   Cut each expert's run of slots into blocks of ``BLOCK_M`` rows. The number of blocks is at most
   ``cdiv(T*k, BLOCK_M) + min(T*k, E)``, a static bound, so the grid never depends on the routing:
   surplus blocks exit at once. Everything here is torch on device, no host read: CUDA-graph safe.
2. ``_gate_up_kernel``: one program per (block, column tile of the intermediate width). It reads the
   block's expert's gate rows and up rows in place (no gathered copy), multiplies the block's token
   rows by both, and writes ``silu(gate) * up`` (fused projection and activation, fp32 accumulate).
3. ``_down_kernel``: one program per (block, column tile of the hidden width), the down projection,
   written straight back to slot order. Each expert's weights are read once per block of
   ``BLOCK_M`` slots: at decode, once per step.

The routing weights, the optional post-expert norm and the sum over a token's k slots are the shared
``combine`` of ``workers.experts.slots``. Supported modules: gated (concatenated gate;up),
``_apply_gate`` the default ``act(gate) * up`` with SiLU, no expert biases; either weight layout
(``is_transposed``) through strides. ``supported`` says why not otherwise.

On a machine without CUDA the kernels run only in Triton's interpreter (``TRITON_INTERPRET=1`` set
before this module is imported): that is how the CPU tests check them. The interpreter's ``tl.dot``
is wrong on bf16 operands (it reads them as integers), so there the operands are upcast to fp32
first (``UPCAST``); on a GPU they go to the tensor cores as they are.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from transformers.integrations.moe import _default_apply_gate

from workers.experts.slots import combine, expert_edges

try:  # Triton is optional: the GPU machine has it; a CPU install may not
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
BLOCK_M, BLOCK_N, BLOCK_K, NUM_WARPS = 16, 64, 64, 4
_SILU_CLASSES = ("SiLU", "SiLUActivation")  # torch's, and transformers' own since 5.2x


def supported(experts, device: torch.device | str) -> str | None:
    """None when the triton path can run ``experts`` on ``device``; otherwise the reason, one line."""
    if triton is None:
        return "triton is not installed"
    device = torch.device(device)
    if device.type != "cuda" and not INTERPRETED:
        return f"the Triton kernels need a CUDA device, not {device.type} (TRITON_INTERPRET=1 runs them on CPU, slowly)"
    if not getattr(experts, "has_gate", False) or not getattr(experts, "is_concatenated", True):
        return f"{type(experts).__name__}: only concatenated gate/up experts are fused"
    if getattr(experts, "has_bias", False):
        return f"{type(experts).__name__}: experts with biases are not fused"
    if getattr(type(experts), "_apply_gate", None) is not _default_apply_gate:
        return f"{type(experts).__name__}: a custom gate ({type(experts).__name__}._apply_gate) is not fused"
    act = getattr(experts, "act_fn", None)
    if not (act is F.silu or type(act).__name__ in _SILU_CLASSES):
        return f"{type(experts).__name__}: activation {type(act).__name__} is not fused (SiLU only)"
    return None


def block_layout(ids: torch.Tensor, num_experts: int, block_m: int = BLOCK_M):
    """Sorted slots cut into per-expert blocks, with static shapes only.

    Returns ``(perm, expert, start, end)``: ``perm`` (S,) the slot order by expert; for each of the
    ``cdiv(S, block_m) + min(S, E)`` blocks its expert and its slice ``[start, end)`` of ``perm``
    (``start == end`` for a surplus block).
    """
    slots = ids.numel()
    sorted_ids, perm = torch.sort(ids)
    edges = expert_edges(sorted_ids, num_experts)
    counts = edges[1:] - edges[:-1]                            # slots per expert; sentinels excluded
    blocks = (counts + block_m - 1) // block_m
    last_block = torch.cumsum(blocks, 0)                       # blocks of experts 0..e
    n_blocks = -(-slots // block_m) + min(slots, num_experts)
    b = torch.arange(n_blocks, device=ids.device, dtype=last_block.dtype)
    expert = torch.searchsorted(last_block, b, right=True)     # == E past the last real block
    live = expert < num_experts
    e = expert.clamp(max=num_experts - 1)
    start = edges[e] + (b - (last_block[e] - blocks[e])) * block_m
    end = torch.minimum(start + block_m, edges[e + 1])
    start = torch.where(live, start, torch.zeros_like(start))
    end = torch.where(live, end, torch.zeros_like(end))
    return perm, e.to(torch.int32), start.to(torch.int32), end.to(torch.int32)


def triton_forward(self, hidden_states, top_k_index, top_k_weights):
    """The ``triton`` path: (T, H), (T, k), (T, k) -> (T, H)."""
    why = supported(self, hidden_states.device)
    if why is not None:
        raise RuntimeError(f"harness experts path 'triton': {why}")
    tokens, k = top_k_index.shape
    num_experts = self.num_experts
    ids = top_k_index.reshape(-1)
    perm, expert, start, end = block_layout(ids, num_experts)
    up, down = self.gate_up_proj, self.down_proj
    hidden = hidden_states.shape[-1]
    # weight strides as (expert, output column, input row): gate_up is (E, 2I, H), or (E, H, 2I) transposed
    if self.is_transposed:
        width = up.shape[2] // 2
        up_strides = (up.stride(0), up.stride(2), up.stride(1))
        down_strides = (down.stride(0), down.stride(2), down.stride(1))
    else:
        width = up.shape[1] // 2
        up_strides = (up.stride(0), up.stride(1), up.stride(2))
        down_strides = (down.stride(0), down.stride(1), down.stride(2))
    x = hidden_states.to(up.dtype).contiguous()
    slots = ids.numel()
    h = torch.empty(slots, width, device=x.device, dtype=up.dtype)      # sorted order
    out = torch.empty(slots, hidden, device=x.device, dtype=down.dtype)  # slot order; sentinel rows unset
    upcast = INTERPRETED  # the interpreter's tl.dot is wrong on bf16 operands: it multiplies in fp32
    precision = "ieee" if up.dtype == torch.float32 or upcast else "tf32"
    n_blocks = expert.numel()
    _gate_up_kernel[(n_blocks, triton.cdiv(width, BLOCK_N))](
        x, up, h, perm, expert, start, end, k, width, hidden, x.stride(0), *up_strides, h.stride(0),
        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, PRECISION=precision, UPCAST=upcast, num_warps=NUM_WARPS)
    _down_kernel[(n_blocks, triton.cdiv(hidden, BLOCK_N))](
        h, down, out, perm, expert, start, end, hidden, width, h.stride(0), *down_strides, out.stride(0),
        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, PRECISION=precision, UPCAST=upcast, num_warps=NUM_WARPS)
    valid = ids < num_experts
    return combine(self, out, top_k_weights, valid, tokens, k, hidden_states.dtype)


if triton is not None:

    @triton.jit
    def _gate_up_kernel(x_ptr, w_ptr, h_ptr, perm_ptr, expert_ptr, start_ptr, end_ptr, top_k, width, hidden,
                        stride_x, stride_we, stride_wn, stride_wk, stride_h,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        PRECISION: tl.constexpr, UPCAST: tl.constexpr):
        """h[rows, cols] = silu(x[tok] @ gate[e].T) * (x[tok] @ up[e].T) for one block of sorted slots."""
        block = tl.program_id(0)
        start = tl.load(start_ptr + block)
        end = tl.load(end_ptr + block)
        if start >= end:
            return
        e = tl.load(expert_ptr + block).to(tl.int64)
        rows = start + tl.arange(0, BLOCK_M)
        row_ok = rows < end
        token = tl.load(perm_ptr + rows, mask=row_ok, other=0) // top_k
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        col_ok = cols < width
        w_gate = w_ptr + e * stride_we + cols[None, :] * stride_wn
        w_up = w_gate + width * stride_wn
        acc_gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, hidden, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < hidden
            a = tl.load(x_ptr + token[:, None] * stride_x + ks[None, :], mask=row_ok[:, None] & k_ok[None, :],
                        other=0.0)
            w_mask = k_ok[:, None] & col_ok[None, :]
            g = tl.load(w_gate + ks[:, None] * stride_wk, mask=w_mask, other=0.0)
            u = tl.load(w_up + ks[:, None] * stride_wk, mask=w_mask, other=0.0)
            if UPCAST:
                a, g, u = a.to(tl.float32), g.to(tl.float32), u.to(tl.float32)
            acc_gate = tl.dot(a, g, acc_gate, input_precision=PRECISION)
            acc_up = tl.dot(a, u, acc_up, input_precision=PRECISION)
        act = acc_gate * tl.sigmoid(acc_gate) * acc_up
        tl.store(h_ptr + rows[:, None] * stride_h + cols[None, :], act.to(h_ptr.dtype.element_ty),
                 mask=row_ok[:, None] & col_ok[None, :])

    @triton.jit
    def _down_kernel(h_ptr, w_ptr, out_ptr, perm_ptr, expert_ptr, start_ptr, end_ptr, hidden, width,
                     stride_h, stride_we, stride_wn, stride_wk, stride_out,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                     PRECISION: tl.constexpr, UPCAST: tl.constexpr):
        """out[slot] = h[row] @ down[e].T for one block of sorted slots, written back in slot order."""
        block = tl.program_id(0)
        start = tl.load(start_ptr + block)
        end = tl.load(end_ptr + block)
        if start >= end:
            return
        e = tl.load(expert_ptr + block).to(tl.int64)
        rows = start + tl.arange(0, BLOCK_M)
        row_ok = rows < end
        slot = tl.load(perm_ptr + rows, mask=row_ok, other=0)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        col_ok = cols < hidden
        w = w_ptr + e * stride_we + cols[None, :] * stride_wn
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, width, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < width
            a = tl.load(h_ptr + rows[:, None] * stride_h + ks[None, :], mask=row_ok[:, None] & k_ok[None, :],
                        other=0.0)
            b = tl.load(w + ks[:, None] * stride_wk, mask=k_ok[:, None] & col_ok[None, :], other=0.0)
            if UPCAST:
                a, b = a.to(tl.float32), b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
        tl.store(out_ptr + slot[:, None] * stride_out + cols[None, :], acc.to(out_ptr.dtype.element_ty),
                 mask=row_ok[:, None] & col_ok[None, :])
