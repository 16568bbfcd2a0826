"""``prune``: remove experts and route among the rest (expert pruning, arXiv 2402.14800).

Removed experts get probability 0 (their logits are masked before the softmax), so the router
works as if the layer had only the kept experts; a token keeps min(k, kept) experts. Which to
remove: the ``experts`` given, or, for ``fraction`` / ``keep``, the least used in each layer on a
calibration forward under native routing over ``calibration_text`` (a fixed English text by
default; tokenized with the tokenizer passed to ``apply``, else its bytes mod the vocabulary)."""

from __future__ import annotations

import math

import torch

from workers.routing.base import LogitsRule, Routed, gate_weights, native_rule, probabilities

CALIBRATION_TEXT = (
    "The history of science is the study of the development of science and scientific knowledge, "
    "including both the natural and social sciences. Mixture-of-experts models route every token to "
    "a few of many feed-forward experts. In 1905 Albert Einstein published four papers; one of them "
    "explained the photoelectric effect. def add(a, b):\n    return a + b\n"
    "The quick brown fox jumps over the lazy dog. 3 + 4 = 7, 12 * 12 = 144. Paris is the capital of "
    "France; Tokyo is the capital of Japan. Water boils at 100 degrees Celsius at sea level. "
)


class Prune(LogitsRule):
    def setup(self, session):
        cfg = self.config
        gates = session.gates
        self._calibrating = False  # pragma: no mutate (equivalent: None is as falsy as False; only read as a bool)
        self._removed: dict[int, torch.Tensor] = {}  # position -> (experts,) bool
        if cfg.experts is not None:
            lists = cfg.experts if cfg.per_layer() else [cfg.experts] * len(gates)
            if len(lists) != len(gates):
                raise ValueError(f"routing strategy 'prune': experts has {len(lists)} per-layer lists "
                                 f"but the model has {len(gates)} MoE layers")
            for gate, ids in zip(gates, lists):
                bad = [i for i in ids if i >= gate.num_experts]
                if bad:
                    raise ValueError(f"routing strategy 'prune': expert {bad[0]} does not exist in MoE layer "
                                     f"{gate.layer} ({gate.num_experts} experts)")
                removed = torch.zeros(gate.num_experts, dtype=torch.bool)
                removed[list(ids)] = True
                self._removed[gate.position] = removed
        else:
            counts = self._calibrate(session)
            for gate in gates:
                n_keep = cfg.kept(gate.num_experts)
                least_used_first = torch.argsort(counts[gate.position], stable=True)  # pragma: no mutate (CPU sorts stably anyway)
                removed = torch.zeros(gate.num_experts, dtype=torch.bool)
                removed[least_used_first[: gate.num_experts - n_keep]] = True
                self._removed[gate.position] = removed
        for gate in gates:
            if bool(self._removed[gate.position].all()):
                raise ValueError(f"routing strategy 'prune' removes every expert of MoE layer {gate.layer}")
        self._k = {g.position: min(g.top_k, g.num_experts - int(self._removed[g.position].sum())) for g in gates}

    def removed(self, position: int) -> list[int]:
        """Expert ids removed from the MoE layer at ``position``."""
        return torch.nonzero(self._removed[position]).flatten().tolist()

    @torch.no_grad()
    def _calibrate(self, session) -> dict[int, torch.Tensor]:
        """Tokens per expert for each MoE layer under native routing, on the calibration text."""
        cfg, model = self.config, session.model
        text = cfg.calibration_text or CALIBRATION_TEXT
        vocab = int(model.get_input_embeddings().weight.shape[0])
        if session.tokenizer is not None:
            ids = list(session.tokenizer(text)["input_ids"])
        else:
            ids = [b % vocab for b in text.encode("utf-8")]
        while len(ids) < cfg.calibration_tokens:
            ids = ids + ids
        ids = ids[: cfg.calibration_tokens]
        seq = min(128, len(ids))
        rows = [ids[i:i + seq] for i in range(0, len(ids) - seq + 1, seq)]
        device = model.get_input_embeddings().weight.device
        self._counts = {g.position: torch.zeros(g.num_experts, dtype=torch.long) for g in session.gates}
        self._calibrating = True
        was_training = model.training
        try:
            model.eval()
            model(input_ids=torch.tensor(rows, device=device))
        finally:
            self._calibrating = False
            model.train(was_training)
        return self._counts

    def route(self, gate, hidden):
        if self._calibrating:
            logits, weights, index = gate.native(hidden)
            self._counts[gate.position] += torch.bincount(index.reshape(-1).cpu(), minlength=gate.num_experts)
            return Routed(logits, weights, index)
        return super().route(gate, hidden)

    def rule(self, gate, logits):
        if self._calibrating:  # an engine without the router module (vLLM): the same softmax top-k
            weights, index = native_rule(gate, logits)
            self._counts[gate.position] += torch.bincount(index.reshape(-1).cpu(), minlength=gate.num_experts)
            return weights, index
        removed = self._removed[gate.position]
        if removed.device != logits.device:
            removed = self._removed[gate.position] = removed.to(logits.device)
        probs = probabilities(logits.masked_fill(removed, -math.inf))
        # rank removed experts below any kept one, even a kept one whose probability underflowed to 0
        index = torch.topk(probs.masked_fill(removed, -math.inf), self._k[gate.position]).indices
        return gate_weights(gate, probs, index, self.config.renormalize, logits), index
