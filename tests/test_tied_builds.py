"""Tied embeddings (``tie_word_embeddings: true``, the capacity suite's bind and gpu scales) hold end to
end: the olmoe build and its olmo twins share one table between input and output, count it once
(the instantiated model as the config arithmetic does), and keep it shared through a training
resume checkpoint and through the saved trained build."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from harness.derive import derive_twin  # noqa: E402
from moe_schema.params import count  # noqa: E402
from workers.builds.materialize import instantiate  # noqa: E402
from workers.builds.params import count_params  # noqa: E402
from workers.training import checkpoint  # noqa: E402

MOE = dict(model_type="olmoe", num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, hidden_size=16,
           intermediate_size=16, num_experts=32, num_experts_per_tok=1, vocab_size=2956, tie_word_embeddings=True)


@pytest.mark.parametrize("config", [MOE, derive_twin(MOE, "active")], ids=["olmoe", "olmo-twin"])
def test_tied_build_shares_one_table_counted_once_and_kept_through_save_and_resume(config, tmp_path):
    model = instantiate({"config": config, "seed": 0})
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    counted = count_params(model)
    assert counted["total"] == count(config)["total"]
    assert counted["total"] - counted["total_no_embed"] == 2956 * 16  # one table
    with torch.no_grad():
        model.get_input_embeddings().weight.add_(1.0)  # a trained value, on the shared table
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    saved = checkpoint.save(tmp_path / "resume", 3, model, optimizer, {"curve": []})
    resumed = instantiate({"config": config, "seed": 1})
    checkpoint.load(saved, resumed, torch.optim.AdamW(resumed.parameters(), lr=0.1))
    assert resumed.get_input_embeddings().weight is resumed.get_output_embeddings().weight
    assert torch.equal(resumed.get_output_embeddings().weight, model.get_input_embeddings().weight)
    model.save_pretrained(tmp_path / "trained")
    reloaded = type(model).from_pretrained(tmp_path / "trained")
    assert reloaded.config.tie_word_embeddings is True
    assert reloaded.get_input_embeddings().weight is reloaded.get_output_embeddings().weight
    assert torch.equal(reloaded.get_output_embeddings().weight, model.get_input_embeddings().weight)


def test_untied_build_counts_two_tables():
    model = instantiate({"config": {**MOE, "tie_word_embeddings": False}, "seed": 0})
    assert model.get_input_embeddings().weight is not model.get_output_embeddings().weight
    counted = count_params(model)
    assert counted["total"] - counted["total_no_embed"] == 2 * 2956 * 16 and counted["total"] == 99_664 + 47_296
