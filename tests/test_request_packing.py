"""Request packing at its boundaries: when a continuation shares its context's row, and when a batch
is full (padded-token budget, row cap, block-mask cells). Torch-free and fast."""

from __future__ import annotations

from workers.evaluation.batching import Group, batch_cost, group_requests, plan_batches


def members(groups):
    return [g.members for g in groups]


def test_a_continuation_shares_the_row_until_it_adds_more_than_the_context():
    ctx = (1, 2, 3)
    # a 4-token continuation adds 3 tokens to the row: as many as the context has, so it shares
    assert members(group_requests([(ctx, (4, 5, 6, 7)), (ctx, (8, 9, 10, 11))], share=True)) == [[0, 1]]
    # a 5-token one adds 4: more than the context, so each request gets its own row
    assert members(group_requests([(ctx, (4, 5, 6, 7, 8)), (ctx, (9, 10, 11, 12, 13))], share=True)) == [[0], [1]]
    # without sharing, even identical requests get a row each
    assert members(group_requests([(ctx, (4,))] * 3, share=False)) == [[0], [1], [2]]


def _groups(n, length):
    return [Group(tuple(range(i, i + length)), [i], [(0,)]) for i in range(n)]


def test_a_batch_filled_exactly_to_the_token_budget_is_one_batch():
    groups = _groups(4, 5)  # 4 rows of 5 tokens: 20 padded tokens
    assert [len(b) for b in plan_batches(groups, max_tokens=20)] == [4]
    assert [len(b) for b in plan_batches(groups, max_tokens=19)] == [3, 1]
    assert batch_cost(plan_batches(groups, max_tokens=20)[0]) == 20


def test_the_row_cap_is_inclusive_and_256_by_default():
    groups = _groups(6, 1)
    assert [len(b) for b in plan_batches(groups, max_tokens=10**6, max_rows=3)] == [3, 3]
    many = _groups(300, 1)
    assert [len(b) for b in plan_batches(many, max_tokens=10**6)] == [256, 44]


def test_the_mask_cell_cap_applies_only_to_packed_rows():
    # rows with one continuation each need no block mask, so a zero mask budget does not split them
    unpacked = _groups(5, 4)
    assert not any(g.packed() for g in unpacked)
    assert [len(b) for b in plan_batches(unpacked, max_tokens=10**6, max_mask_cells=0)] == [5]
    packed = [Group(tuple(range(i, i + 4)), [2 * i, 2 * i + 1], [(1, 2), (3, 4)]) for i in range(4)]
    assert all(g.packed() for g in packed) and packed[0].row_len() == 6
    # 2 rows x 6 x 6 = 72 cells fit exactly; a third row would need 108
    assert [len(b) for b in plan_batches(packed, max_tokens=10**6, max_mask_cells=72)] == [2, 2]
