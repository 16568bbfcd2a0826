"""An example third-party routing strategy package, found through its entry point.

``bottomk``: the k *least* probable experts per token, an adversarial router (worse than
random). It shows the whole plugin interface: a torch-free attrs config class registered in the
``moe_harness.routing`` entry-point group (see ``../moe_harness_example_routing-0.1.0.dist-info``)
and a torch strategy object built lazily.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from moe_schema.routing import StrategyConfig, positive_int


@attrs.frozen(kw_only=True)
class BottomKConfig(StrategyConfig):
    name: ClassVar[str] = "bottomk"
    implementation: ClassVar[str] = "moe_harness_example_routing.strategy:BottomK"  # built lazily
    k: int = attrs.field(default=1, validator=positive_int)

    def experts_per_token(self, native_k, num_experts):
        return float(min(self.k, num_experts))
