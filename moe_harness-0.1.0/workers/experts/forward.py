"""The harness's experts forward, registered with transformers as experts implementation ``"harness"``.

transformers 5 calls ``forward(experts, hidden_states, top_k_index, top_k_weights)`` for every MoE
block whose config says ``_experts_implementation == "harness"``: ``hidden_states`` is (T, H), the
router's ``top_k_index`` / ``top_k_weights`` are (T, k), and an index ``>= num_experts`` is the
sentinel "no expert" (routing strategies that give a token fewer experts use it, at weight 0).

Four paths. ``choose_path`` picks one of the first three from static sizes only (T*k slots against
E experts, device, dtype), so a captured CUDA graph or a compiled step always takes the same one:

- ``grouped``: sort the slots by expert, per-expert offsets by ``searchsorted`` on the sorted ids,
  one ``grouped_mm`` per projection over the expert weights in place (each touched expert read once,
  empty groups skipped). CUDA-graph safe. The default wherever the kernel runs: CUDA sm80+ in bf16
  with 16-byte aligned strides, and CPU eager (torch's CPU kernel takes any float dtype).
- ``gather``: ``index_select`` the T*k slots' expert weight slices into (T*k, 2I, H) and (T*k, H, I)
  and ``bmm``. No host sync, no data-dependent shape: graph safe, and it runs on anything. It moves
  about three times the bytes of ``grouped`` (each slot's slice read, written, read again; a
  duplicate slot copies its expert again), so it is the fallback off CPU where ``grouped_mm`` cannot
  run, and the choice for T*k <= ``GATHER_MAX_SLOTS_PER_EXPERT`` * E, which is 0 (never) until a GPU
  measurement (``benchmarks/moe_decode.py --paths``) shows it faster for small T*k.
- ``looped``: sort by expert, then one ``mm`` per touched expert on contiguous rows. Needs the
  per-expert counts on the host, which costs nothing on CPU: the plain-torch CPU fallback where
  ``grouped_mm`` is missing or the strides are not aligned.
- ``triton``: two fused Triton kernels (gate/up + SiLU, then down) over per-expert blocks of sorted
  slots, reading the touched experts' weights in place; graph safe. Not picked by ``choose_path``
  (not yet timed on a GPU): the implementation ``"harness_triton"`` (or ``force_path("triton")``)
  selects it. It lives in
  ``workers.experts.triton_moe``, imported on first use.

Every path accumulates the k weighted expert outputs of a token with a reshape + sum (no atomics)
and drops sentinel slots with ``torch.where`` (safe even against uninitialised rows).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from workers.experts.slots import combine, expert_edges

PATHS = ("gather", "grouped", "looped", "triton")
GATHER_MAX_SLOTS_PER_EXPERT = 0.0  # off CPU, gather while T*k <= this * E (see the module doc)
_forced: list[str] = []


@contextlib.contextmanager
def force_path(path: str):
    """Make every harness experts forward take ``path`` while inside (benchmarks and tests)."""
    if path not in PATHS:
        raise ValueError(f"experts path {path!r}: unknown; known: {', '.join(PATHS)}")
    _forced.append(path)
    try:
        yield
    finally:
        _forced.pop()


def grouped_mm_usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Can ``grouped_mm`` run on these operands (kernel present, device capable, strides aligned)?"""
    if not (hasattr(F, "grouped_mm") or hasattr(torch, "_grouped_mm")):
        return False
    if weight.device.type == "cuda" and torch.cuda.get_device_capability(weight.device) < (8, 0):
        return False
    if weight.dtype != torch.bfloat16 and (weight.device.type != "cpu" or torch.compiler.is_compiling()):
        return False  # the CUDA kernel and inductor's lowering take bf16 only; CPU eager takes any float
    if weight.device.type == "cpu" and not torch.compiler.is_compiling() and weight.data_ptr() % 16:
        return False  # older CPU kernels want 16-byte aligned storage (safetensors mmap may not be)
    size = weight.element_size()
    return all((d * size) % 16 == 0 for d in (x.shape[-1], *weight.shape[1:]))


def choose_path(slots: int, num_experts: int, x: torch.Tensor, weight: torch.Tensor) -> str:
    """The path for ``slots`` (T*k) token-expert pairs: from static sizes, device and dtype only."""
    if _forced:
        return _forced[-1]
    cpu_eager = x.device.type == "cpu" and not torch.compiler.is_compiling()
    if not cpu_eager and slots <= GATHER_MAX_SLOTS_PER_EXPERT * num_experts:
        return "gather"  # only where the constant is raised after a measurement
    if grouped_mm_usable(x, weight):
        return "grouped"
    return "looped" if cpu_eager else "gather"


def experts_forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                    top_k_weights: torch.Tensor) -> torch.Tensor:
    """transformers' experts-implementation signature: (T, H), (T, k), (T, k) -> (T, H)."""
    _check_shapes(hidden_states, top_k_index, top_k_weights)
    path = choose_path(top_k_index.numel(), self.num_experts, hidden_states, _up_weight(self))
    return _PATH_FUNCTIONS[path](self, hidden_states, top_k_index, top_k_weights)


def triton_experts_forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                           top_k_weights: torch.Tensor) -> torch.Tensor:
    """Implementation ``"harness_triton"``: always the fused Triton kernels (``triton`` path)."""
    _check_shapes(hidden_states, top_k_index, top_k_weights)
    path = _forced[-1] if _forced else "triton"
    return _PATH_FUNCTIONS[path](self, hidden_states, top_k_index, top_k_weights)


def _check_shapes(hidden_states, top_k_index, top_k_weights) -> None:
    if hidden_states.dim() != 2 or top_k_index.shape != top_k_weights.shape or top_k_index.dim() != 2 \
            or top_k_index.shape[0] != hidden_states.shape[0]:
        raise ValueError(f"harness experts: expected hidden (T, H) and index/weights (T, k), got "
                         f"{tuple(hidden_states.shape)}, {tuple(top_k_index.shape)}, {tuple(top_k_weights.shape)}")


# --- pieces shared by the paths --------------------------------------------------------------------

def _up_weight(self) -> torch.Tensor:
    return self.gate_up_proj if self.has_gate else self.up_proj


def _up_bias(self) -> torch.Tensor | None:
    if not self.has_bias:
        return None
    return self.gate_up_proj_bias if self.has_gate else self.up_proj_bias


def _activate(self, h: torch.Tensor) -> torch.Tensor:
    """The family's own gating (``_apply_gate``: act(gate) * up) or plain activation."""
    return self._apply_gate(h) if self.has_gate else self.act_fn(h)


def _bmm(x: torch.Tensor, w: torch.Tensor, transposed: bool) -> torch.Tensor:
    """Row i of x (S, in) times matrix i of w: (S, out, in), or (S, in, out) when transposed."""
    x = x.to(w.dtype)
    if transposed:
        return torch.bmm(x.unsqueeze(1), w).squeeze(1)
    return torch.bmm(w, x.unsqueeze(-1)).squeeze(-1)


# --- the paths -------------------------------------------------------------------------------------

def gather_forward(self, hidden_states, top_k_index, top_k_weights):
    """Static shapes: the T*k touched experts' weight slices gathered and multiplied in one bmm each."""
    tokens, k = top_k_index.shape
    ids = top_k_index.reshape(-1)
    valid = ids < self.num_experts
    safe = torch.where(valid, ids, torch.zeros_like(ids))  # a sentinel computes expert 0, then is dropped
    x = hidden_states.unsqueeze(1).expand(tokens, k, hidden_states.shape[-1]).reshape(tokens * k, -1)
    h = _bmm(x, _up_weight(self).index_select(0, safe), self.is_transposed)
    if self.has_bias:
        h = h + _up_bias(self).index_select(0, safe)
    h = _activate(self, h)
    out = _bmm(h, self.down_proj.index_select(0, safe), self.is_transposed)
    if self.has_bias:
        out = out + self.down_proj_bias.index_select(0, safe)
    return combine(self, out, top_k_weights, valid, tokens, k, hidden_states.dtype)


def _sorted_slots(self, hidden_states, top_k_index):
    """Slots sorted by expert (sentinels last): (expert ids, permutation, the slots' hidden rows)."""
    k = top_k_index.shape[1]
    ids, perm = torch.sort(top_k_index.reshape(-1))
    return ids, perm, hidden_states.index_select(0, perm // k)


def _unsort(out_sorted: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Rows in expert order back to slot order (perm is a permutation: a plain scatter, no atomics)."""
    return torch.empty_like(out_sorted).index_copy_(0, perm, out_sorted)


def _grouped_mm(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor, transposed: bool) -> torch.Tensor:
    w = w if transposed else w.transpose(-2, -1)  # grouped_mm wants (E, in, out)
    mm = F.grouped_mm if hasattr(F, "grouped_mm") else torch._grouped_mm
    return mm(x.to(w.dtype), w, offs=offsets)


def grouped_forward(self, hidden_states, top_k_index, top_k_weights):
    """Sort by expert and run one grouped_mm per projection; rows past the last offset are sentinels."""
    tokens, k = top_k_index.shape
    num_experts = self.num_experts
    ids, perm, x = _sorted_slots(self, hidden_states, top_k_index)
    offsets = expert_edges(ids, num_experts)[1:].to(torch.int32)  # end of each expert's rows
    valid = ids < num_experts
    safe = torch.where(valid, ids, torch.zeros_like(ids))
    h = _grouped_mm(x, _up_weight(self), offsets, self.is_transposed)
    if self.has_bias:
        h = h + _up_bias(self).index_select(0, safe)
    h = _activate(self, h)
    out = _grouped_mm(h, self.down_proj, offsets, self.is_transposed)
    if self.has_bias:
        out = out + self.down_proj_bias.index_select(0, safe)
    out = torch.where(valid.unsqueeze(-1), out, torch.zeros((), dtype=out.dtype, device=out.device))
    return combine(self, _unsort(out, perm), top_k_weights, _unsort(valid, perm), tokens, k,
                    hidden_states.dtype)


def looped_forward(self, hidden_states, top_k_index, top_k_weights):
    """Sort by expert, one mm per touched expert on its contiguous rows (reads the counts on the host)."""
    tokens, k = top_k_index.shape
    num_experts = self.num_experts
    ids, perm, x = _sorted_slots(self, hidden_states, top_k_index)
    valid = ids < num_experts
    counts = torch.bincount(ids.masked_fill(~valid, num_experts), minlength=num_experts + 1)
    up, down = _up_weight(self), self.down_proj
    out = x.new_zeros(x.shape[0], down.shape[2] if self.is_transposed else down.shape[1], dtype=down.dtype)
    start = 0
    for expert, n in enumerate(counts[:num_experts].tolist()):
        if n == 0:
            continue
        rows = slice(start, start + n)
        start += n
        w_up = up[expert] if self.is_transposed else up[expert].t()
        h = x[rows].to(up.dtype) @ w_up
        if self.has_bias:
            h = h + _up_bias(self)[expert]
        h = _activate(self, h)
        o = h @ (down[expert] if self.is_transposed else down[expert].t())
        if self.has_bias:
            o = o + self.down_proj_bias[expert]
        out[rows] = o
    return combine(self, _unsort(out, perm), top_k_weights, _unsort(valid, perm), tokens, k,
                    hidden_states.dtype)


def triton_forward(self, hidden_states, top_k_index, top_k_weights):
    """Fused Triton kernels (``workers.experts.triton_moe``; imports triton on first use)."""
    from workers.experts.triton_moe import triton_forward as fused

    return fused(self, hidden_states, top_k_index, top_k_weights)


_PATH_FUNCTIONS = {"gather": gather_forward, "grouped": grouped_forward, "looped": looped_forward,
                   "triton": triton_forward}
