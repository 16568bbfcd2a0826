"""Which tests mutation testing runs (`tox -e mutation`): the fast unit tests of the core modules.

mutmut runs, for each mutant, the selected tests that call the mutated function, so a selected test
must be quick and start no daemon, subprocess or model: it may run thousands of times. The selection
is a marker (``-m mutation_core`` in pyproject's [tool.mutmut]) that tests/conftest.py puts on the
tests listed here, so that adding a test file here keeps mutmut's cached verdicts: mutmut resets
every cached result when its own test-selection setting changes, but only re-tests what changed
when tests are added. (Taking a file out of this list leaves verdicts it made; start afresh then:
``MUTATION_FRESH=1 tox -e mutation``.)
"""

from __future__ import annotations

# Under mutmut each selected test gets this timeout (the slowest takes ~3 s unmutated): a mutant that
# makes a coordinator run wait forever is killed by it instead of costing the suite's 600 s.
MUTANT_TIMEOUT_S = 20

FILES = {
    # the report's statistics
    "test_bootstrap.py", "test_report_stats.py", "test_interval_widths.py", "test_merge_seeds.py",
    "test_bootstrap_method.py", "test_pair_rows.py",
    # twin derivation and parameter counting
    "test_derive.py", "test_params.py", "test_twin_widths.py", "test_param_arithmetic.py", "test_twin_configs.py",
    # suite parsing and validation
    "test_suite.py", "test_suite_keys.py", "test_suite_errors.py", "test_sweep.py", "test_schema.py",
    # planning, job keys and the store's reuse rules
    "test_plan_store.py", "test_plan_expand.py", "test_rerun.py", "test_store_files.py",
    # the coordinator
    "test_coordinator.py", "test_coordinator_paths.py", "test_coordinator_rules.py",
    # request packing, shard merging
    "test_evaluation.py", "test_shard_merge.py",
    # the routing strategies
    "test_routing.py", "test_routing_rules.py", "test_request_packing.py",
    # the protocol
    "test_protocol.py", "test_wire_caps.py", "test_protocol_messages.py", "test_schema_messages.py",
    # the result schema (checked by the coordinator and the store)
    "test_result_schema.py",
    "test_core_edges.py",
    # what the report prints: statistics, costs, the number rule, tick labels
    "test_stats_rules.py", "test_costs.py", "test_cost_rules.py", "test_number_rule.py", "test_ticks_rules.py",
    # what a key, an engine and a bios vocabulary are made of; the word tokenizer
    "test_keys_and_engines.py", "test_engines.py", "test_bios_vocab.py",
    # a worker's reading of free memory
    "test_memory_reading.py",
    # the knowledge regime and bits stored; job-key locks; task folder confinement; the YAML bounds
    "test_capacity_book.py", "test_capacity_bits.py", "test_capacity_rules.py", "test_lock_rules.py",
    "test_taskfile_rules.py", "test_taskfiles.py", "test_task_shapes.py", "test_yaml_bounds.py",
    # the vLLM engine's arithmetic (request windows, scores, telemetry per strategy), without vLLM
    "test_vllm_arithmetic.py",
    # what the report decides: engine parity, the answer card, the claims' verdicts, knowledge capacity
    "test_report_parity.py", "test_report_claims.py", "test_report_answers.py", "test_capacity_report.py",
    "test_verdict_rules.py", "test_card_rules.py", "test_parity_rules.py", "test_capacity_report_rules.py",
    # quantization as an axis and claim 9 (in-memory runs; one test draws the figure)
    "test_report_quant.py",
}

# Tests in those files that load a model or start processes (a test name containing one of these).
SKIP = (
    "cli_prints", "torch_free", "imports_no_torch", "shards_merge_to_the_unsplit", "hello_lists", "run_reports",
    "busy_worker", "stop_lets", "cancel_cancels", "interrupt_escalates", "test_cli_exit_2", "plan_prints_the_same",
    # parses every source file, mutated ones included (calls no mutated function): under mutmut's tracing,
    # CPython 3.11's ast.parse fails on the deepest of them ("AST constructor recursion depth mismatch")
    "there_is_one_did_you_mean",
)

# only these tests of these files (test_evaluation.py: the rest load a model, a session fixture rebuilt in every
# mutant's fork)
ONLY = {
    "test_evaluation.py": ("test_window_cuts_like_lm_eval", "test_grouping_and_budgeted_batches",
                           "test_merge_errors_and_aggregations"),
    # the rest run harness processes, daemons or lm-eval
    "test_taskfiles.py": ("test_unpack_round_trip_and_refusals", "test_a_folder_over_the_limit_is_not_shipped",
                          "test_editing_a_task_file_changes_the_keys_of_its_jobs_only"),
    "test_task_shapes.py": ("test_a_path_inside_the_task_folder_is_read_in_the_workers_copy",
                            "test_data_dir_and_a_dataset_folder_are_read_in_the_copy_and_files_relative_to_them_stay_relative",
                            "test_a_path_outside_the_task_folder_is_refused_on_both_sides_naming_the_users_folder",
                            "test_a_builder_with_no_files_named_is_refused_rather_than_reading_the_working_directory",
                            "test_an_include_inside_the_folder_ships_relative_to_its_yaml_and_the_digest_covers_it"),
    # the pure verdict tests (the rest write and render whole reports)
    "test_report_answers.py": ("test_t_quantiles_and_interval_width_on_known_data",
                               "test_detectable_difference_and_needed_seeds_and_documents",
                               "test_decide_and_an_interval_touching_the_boundary_is_inconclusive",
                               "test_claim1_holds_does_not_hold_and_inconclusive_over_seeds",
                               "test_within_seed_bootstrap_touching_zero_is_inconclusive_with_documents_needed",
                               "test_claim2_equivalence_margin_and_higher_is_better_metrics",
                               "test_fixture_verdicts_are_the_designed_ones",
                               "test_power_wording_for_zero_spread_both_zero_and_a_margin",
                               "test_one_seed_uses_the_within_seed_bootstrap_and_curves_stand_in_for_tasks",
                               "test_claim5_without_held_out_tasks_reads_the_runs_own_tasks",
                               "test_a_seed_without_a_value_drops_out_and_the_others_keep_their_labels"),
    # test_figure_and_section draws the figure (matplotlib, seconds)
    "test_capacity_report.py": ("test_capacity_table_gives_r_r_max_and_the_papers_expectation_side_by_side",
                                "test_an_untied_build_is_counted_with_one_embedding_table",
                                "test_moe_factor_only_for_the_papers_geometry_against_the_best_dense",
                                "test_no_capacity_scoring_says_so"),
}


def selected(file_name: str, test_name: str) -> bool:
    if file_name not in FILES or any(s in test_name for s in SKIP):
        return False
    only = ONLY.get(file_name)
    return only is None or test_name.split("[")[0] in only
