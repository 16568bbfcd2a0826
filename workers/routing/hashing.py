"""``hash``: hash layers (arXiv 2106.04426): a token's experts are fixed by its id alone.

A seeded table maps every token id to k distinct experts (the same table in every layer). The
router needs the input ids: ``apply`` captures them with a pre-hook on the input embedding.
The chosen experts are gated by the router's probabilities, renormalised as the checkpoint does."""

from __future__ import annotations

import torch

from workers.routing.base import LogitsRule, check_k, gate_weights, probabilities


class HashRouting(LogitsRule):
    def setup(self, session):
        num_experts = {gate.num_experts for gate in session.gates}
        for gate in session.gates:
            check_k(gate, self.config.k, "'hash'")
        embeddings = session.model.get_input_embeddings()
        vocab = int(embeddings.weight.shape[0])
        g = torch.Generator().manual_seed(self.config.seed)
        self._tables = {}  # num_experts -> (vocab, k) expert ids
        for e in sorted(num_experts):
            self._tables[e] = torch.rand(vocab, e, generator=g).topk(self.config.k).indices

    def experts_for(self, token_ids: torch.Tensor, num_experts: int) -> torch.Tensor:
        table = self._tables[num_experts]
        if table.device != token_ids.device:
            table = self._tables[num_experts] = table.to(token_ids.device)
        return table[token_ids]

    def rule(self, gate, logits):
        ids = gate.token_ids(logits.shape[0])
        if ids is None:
            raise ValueError("routing strategy 'hash' needs the input token ids, and this forward "
                             "gave none (inputs_embeds?) or of another shape")
        probs = probabilities(logits)
        index = self.experts_for(ids, gate.num_experts)
        return gate_weights(gate, probs, index, self.config.renormalize, logits), index
