# Result files (doc/RESULTS.md): the same content as before for the same run, and every file the
# suite writes valid against doc/result.schema.json. Uses tw_cmd_test (cmake/tests.cmake, read
# before this file) and TW_MPIRUN (cmake/comm.cmake).
if(NOT TW_TESTS)
  return()
endif()
set(TW_FIXTURES ${CMAKE_SOURCE_DIR}/tests/data/results)
set(TW_FX_OUT ${TW_TR}/fixture)

# ---- fixtures: deterministic runs against the files kept in tests/data/results -----------------
# the comparison itself: a fixture matches itself and survives clock changes, and each kind of
# change it exists to catch fails it
tw_cmd_test(result_fixture_checker_catches_changes OUT "tw-test: PASS"
  COMMAND ${TW_PYTHON3} ${TW_CMD_DIR}/check_fixture_selftest.py ${TW_FIXTURES})
foreach(c single sweep window preset dump incomplete)
  set(extra "")
  if(c STREQUAL "incomplete")
    set(extra " --incomplete")
  endif()
  tw_cmd_test(result_fixture_${c} OUT "tw-test: PASS" TIMEOUT 120
    COMMAND sh ${TW_CMD_DIR}/fixture_run.sh ${c} ${TW} ${TW_FX_OUT}/${c}.json
    CHECK "${TW_PYTHON3} ${TW_CMD_DIR}/check_fixture.py ${TW_FIXTURES}/${c}.json ${TW_FX_OUT}/${c}.json${extra}"
    CHECK "${TW_PYTHON3} ${TW_CMD_DIR}/check_schema.py ${TW_FX_OUT}/${c}.json")
endforeach()
if(MPI_C_FOUND)
  foreach(c tp2 tpsweep)
    tw_cmd_test(result_fixture_${c} OUT "tw-test: PASS" TIMEOUT 120 LABELS mpi nosan
      ENV ${TW_MPI_ENV}
      COMMAND sh ${TW_CMD_DIR}/fixture_run.sh ${c} ${TW} ${TW_FX_OUT}/${c}.json ${TW_MPIRUN}
      CHECK "${TW_PYTHON3} ${TW_CMD_DIR}/check_fixture.py ${TW_FIXTURES}/${c}.json ${TW_FX_OUT}/${c}.json"
      CHECK "${TW_PYTHON3} ${TW_CMD_DIR}/check_schema.py ${TW_FX_OUT}/${c}.json")
  endforeach()
endif()

# ---- the schema: doc/result.schema.json (and doc/export.schema.json) ----------------------------
set(TW_CS "${TW_PYTHON3} ${TW_CMD_DIR}/check_schema.py")
# the schema rejects each kind of breakage, and accepts the kept files
tw_cmd_test(result_schema_rejects_broken_files OUT "tw-test: PASS"
  COMMAND ${TW_PYTHON3} ${TW_CMD_DIR}/check_schema_selftest.py ${TW_FIXTURES})
tw_cmd_test(result_schema_kept_fixtures OUT "tw-test: PASS \\(10 file"
  COMMAND ${TW_PYTHON3} ${TW_CMD_DIR}/check_schema.py ${TW_FIXTURES}/single.json
  ${TW_FIXTURES}/sweep.json ${TW_FIXTURES}/window.json ${TW_FIXTURES}/preset.json
  ${TW_FIXTURES}/dump.json ${TW_FIXTURES}/incomplete.json ${TW_FIXTURES}/tp2.json
  ${TW_FIXTURES}/tpsweep.json ${TW_FIXTURES}/serving.json ${TW_FIXTURES}/serving-findrate.json)
# the checker itself fails (exit 1) on a result file that breaks the schema, naming the key
# (written outside test-results, whose every file must validate)
tw_cmd_test(result_schema_check_fails_on_a_broken_file EXIT 1
  OUT "tw-test: FAIL: .*schema-broken.json: metrics: 'ttft_s' is a required property"
  COMMAND sh -c "sed '/^    .ttft_s.: [0-9]/d' ${TW_FIXTURES}/single.json > ${CMAKE_BINARY_DIR}/schema-broken.json && exec ${TW_CS} ${CMAKE_BINARY_DIR}/schema-broken.json")
# a sweep on stdout (--format json) and in its file, and an export's manifest
tw_cmd_test(result_schema_run_json_stdout JSON_OUT RM ${TW_TR}/schema_sweep.json
  COMMAND ${TW} run ${TW_TINY} --batch 1,2 --gen 3 --prompt 4 --reps 1 --power none
  --format json --out ${TW_TR}/schema_sweep.json
  CHECK "${TW_CS} $TW_OUT ${TW_TR}/schema_sweep.json")
# mixtures of experts (schema 1.2): a sweep of the tiny DeepSeek-V3 (latent attention, shared
# experts) with a routing skew, on stdout and in its file, each row with its experts block; read
# back by compare (the one reader). The expert-parallel files: mpi_run_ep2_* (cmake/tests.cmake).
tw_cmd_test(result_schema_moe_sweep JSON_OUT RM ${TW_TR}/schema_moe_sweep.json
  COMMAND ${TW} run --model tiny-deepseek-v3 --threads 1 --membw-gbps 10 --peak-gflops 10
  --warmup 0 --batch 1,3 --prompt 5 --gen 4 --reps 2 --routing-skew 2 --watts 50 --format json
  --out ${TW_TR}/schema_moe_sweep.json
  CHECK "${TW_CS} $TW_OUT ${TW_TR}/schema_moe_sweep.json"
  CHECK "${TW_CJ} ${TW_TR}/schema_moe_sweep.json \"r['schema_minor'] >= 2 and len(rows) == 2\" \"all(x['scenario']['routing_skew'] == 2 and 'ep' not in x['scenario'] for x in rows)\" \"all(x['experts']['n_experts'] == 16 and x['experts']['experts_per_token'] == 3 and x['experts']['moe_layers'] == 2 for x in rows)\" \"[sum(x['experts']['load']) for x in rows] == [2 * (b * 5 + b * 3) * 3 * 2 for b in (1, 3)]\" \"all(3 <= x['experts']['decode_experts_per_layer'] <= 3 * x['scenario']['batch'] for x in rows)\""
  CHECK "${TWQ} compare ${TW_TR}/schema_moe_sweep.json ${TW_TR}/schema_moe_sweep.json >/dev/null")
tw_cmd_test(export_manifest_schema
  COMMAND sh -c "rm -rf ${TW_TR}/schema_export && exec ${TWQ} export --model tiny-qwen2 --out ${TW_TR}/schema_export"
  CHECK "${TW_CS} --schema ${CMAKE_SOURCE_DIR}/doc/export.schema.json ${TW_TR}/schema_export/tokwatt-export.json")
# every result file and export manifest the command tests wrote (they run first: DEPENDS on all
# tests defined so far); skipped when run alone before any of them
get_property(_tw_written DIRECTORY PROPERTY TESTS)
tw_cmd_test(result_schema_every_file_written OUT "tw-test: PASS" SKIP 77 TIMEOUT 120
  COMMAND ${TW_PYTHON3} ${TW_CMD_DIR}/check_schema.py --every ${TW_TR})
set_tests_properties(result_schema_every_file_written PROPERTIES DEPENDS "${_tw_written}")

# ---- serving results (schema 1.4): the fixtures' generator --------------------------------------
# writes tests/data/results/serving*.json from the simulation driver; test_serve_result runs it
# again (TW_BUILD_DIR/tests/serve_fixture_gen) and compares with the kept files
add_executable(serve_fixture_gen ${CMAKE_SOURCE_DIR}/tests/serve_fixture_gen.c)
target_link_libraries(serve_fixture_gen PRIVATE tw)
set_target_properties(serve_fixture_gen PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
# the serving fixtures' figures are what their own requests give, recomputed in Python from the
# definitions (doc/METRICS.md); the checker fails on a moved request, a changed window, a flipped
# search trial
tw_cmd_test(serving_fixture_figures_from_requests OUT "tw-test: PASS \\(2 file"
  COMMAND ${TW_PYTHON3} ${TW_CMD_DIR}/check_serving.py ${TW_FIXTURES}/serving.json
  ${TW_FIXTURES}/serving-findrate.json)
tw_cmd_test(serving_fixture_check_catches_changes OUT "tw-test: PASS \\(3 breakages"
  COMMAND ${TW_PYTHON3} ${TW_CMD_DIR}/check_serving.py --selftest
  ${TW_FIXTURES}/serving-findrate.json)

# ---- project on a serving result: goodput at the latency targets, the e2e basis beside it --------
set(TW_SFX ${TW_FIXTURES}/serving-findrate.json)
set(_f "__import__('json').load(open('${TW_SFX}'))")
tw_cmd_test(project_serving_goodput_basis JSON_OUT
  COMMAND ${TW} project --results ${TW_SFX} --no-svg --format json
  ERR "basis: GOODPUT at the latency targets \\(TTFT <= 2000 ms, TPOT <= 100 ms\\)"
  CHECK "${TW_CJ} $TW_OUT \"r['device_basis'] == 'goodput' and r['latency_targets'] == 'TTFT <= 2000 ms, TPOT <= 100 ms'\" \"abs(r['device']['tokens_per_s'] / (${_f}['serving']['summary']['goodput']['output_tokens_per_s'] / ${_f}['scenario']['devices']) - 1) < 1e-8\" \"abs(r['e2e_comparison']['tokens_per_s_per_device'] / ${_f}['metrics']['e2e_tokens_per_s'] - 1) < 1e-8\" \"all(abs(v['goodput'] / v['e2e'] - r['e2e_comparison']['tokens_per_s_per_device'] / r['device']['tokens_per_s']) < 1e-6 for v in r['e2e_comparison']['facility_mw_final_year'].values())\" \"r['headline'].startswith('within the latency targets (TTFT <= 2000 ms, TPOT <= 100 ms') and 'goodput basis): at ' in r['headline']\" \"'serving.summary.goodput.output_tokens_per_s' in r['input_note'] and 'constraint' in r['input_note']\"")
tw_cmd_test(project_serving_shows_both_bases
  COMMAND ${TW} project --results ${TW_SFX} --no-svg
  OUT "\\*\\*Basis: goodput at the latency targets\\*\\*" OUT "\\*\\*Without the latency targets \\(e2e basis, metrics.e2e_tokens_per_s\\), for comparison\\*\\*"
  OUT "Headline:\\*\\* within the latency targets")
# past the capacity (serving.json, 26 requests/s): the goodput is below the throughput, the
# megawatts within the targets above the e2e ones, and the note says the constraint failed
set(_g "__import__('json').load(open('${TW_FIXTURES}/serving.json'))")
tw_cmd_test(project_serving_past_capacity JSON_OUT
  COMMAND ${TW} project --results ${TW_FIXTURES}/serving.json --no-svg --format json
  CHECK "${TW_CJ} $TW_OUT \"r['device_basis'] == 'goodput' and 'did NOT hold' in r['input_note']\" \"abs(r['device']['tokens_per_s'] / ${_g}['serving']['summary']['goodput']['output_tokens_per_s'] - 1) < 1e-8\" \"r['e2e_comparison']['tokens_per_s_per_device'] > 1.1 * r['device']['tokens_per_s']\" \"all(v['goodput'] > v['e2e'] for v in r['e2e_comparison']['facility_mw_final_year'].values())\"")
tw_cmd_test(project_serving_e2e_basis_on_request JSON_OUT
  COMMAND ${TW} project --results ${TW_SFX} --no-svg --format json --basis e2e
  CHECK "${TW_CJ} $TW_OUT \"r['device_basis'] == 'e2e' and 'e2e_comparison' not in r\" \"abs(r['device']['tokens_per_s'] / ${_f}['metrics']['e2e_tokens_per_s'] - 1) < 1e-8\" \"not r['headline'].startswith('within')\"")
tw_cmd_test(project_static_run_keeps_the_e2e_basis JSON_OUT
  COMMAND ${TW} project --results ${TW_FIXTURES}/single.json --no-svg --format json
  CHECK "${TW_CJ} $TW_OUT \"r['device_basis'] == 'e2e' and r['latency_targets'] is None\"")
tw_cmd_test(project_goodput_basis_needs_a_serving_run EXIT 1
  ERR "single.json: not a serving run \\(no serving block\\): no goodput at a latency target"
  COMMAND ${TW} project --results ${TW_FIXTURES}/single.json --no-svg --basis goodput)
tw_cmd_test(project_basis_refuses_an_unknown_one EXIT 2 ERR "--basis must be auto, goodput or e2e"
  COMMAND ${TW} project --results ${TW_SFX} --no-svg --basis offline)

# ---- report with a serving result: the page stays well formed XML (parsed by Python's expat) ----
tw_cmd_test(report_serving_page_is_well_formed OUT "tw-test: PASS"
  COMMAND sh -c "rm -rf ${TW_TR}/report-serving && ${TWQ} report ${TW_FIXTURES}/serving-findrate.json ${TW_FIXTURES}/serving.json ${TW_FIXTURES}/single.json --out ${TW_TR}/report-serving >/dev/null && exec ${TW_PYTHON3} -c \"__import__('xml.etree.ElementTree', fromlist=['x']).parse(__import__('sys').argv[1]) and print('tw-test: PASS')\" ${TW_TR}/report-serving/report.html")

# ---- compare a serving result with the published MLPerf Server rows of its model ----------------
set(_pub "{x['id']: x for x in __import__('json').load(open('${CMAKE_SOURCE_DIR}/configs/published/figures.json'))['rows']}")
set(_sum "${_f}['serving']['summary']")
tw_cmd_test(compare_serving_against_published_server JSON_OUT
  COMMAND ${TW} compare ${TW_SFX} --format json
  CHECK "${TW_CJ} $TW_OUT \"len(r['rows']) >= 2 and {x['published_id'] for x in r['rows']} == {k for k, v in ${_pub}.items() if v['model'] == 'llama-3.1-8b' and v['scenario'] == 'server'}\" \"all(x['measured_basis'] == 'serving.summary.output_tokens_per_s' and x['published_scenario'] == 'server' and x['measured_scenario'] == 'server' for x in r['rows'])\" \"all(abs(x['measured_tokens_per_s'] / (${_sum}['output_tokens_per_s'] if x['basis'] == 'system' else ${_sum}['output_tokens_per_s_per_device']) - 1) < 1e-8 for x in r['rows'])\" \"all(abs(x['ratio_tokens_per_s'] - x['measured_tokens_per_s'] / (${_pub}[x['published_id']]['value'] / (1 if x['basis'] == 'system' else ${_pub}[x['published_id']]['system']['count']))) < 1e-9 for x in r['rows'])\" \"all(abs(x['measured_ttft_p99_s'] / ${_sum}['constraint']['ttft_pctl_s'] - 1) < 1e-8 and abs(x['measured_tpot_p99_s'] / ${_sum}['constraint']['tpot_pctl_s'] - 1) < 1e-8 and x['measured_constraint_met'] is True for x in r['rows'])\" \"all(x['published_ttft_limit_ms'] == 2000 and x['published_tpot_limit_ms'] == 100 and x['measured_ttft_limit_ms'] == 2000 for x in r['rows'])\" \"all(any(w in c for c in r['caveats']) for w in ('synthetic weights', 'not the published run', 'not a valid MLPerf result', 'different hardware: 8 x NVIDIA B200', 'limits TTFT 2000 ms, TPOT 100 ms at p99 from configs/serving/mlperf-limits.json', 'the same limits as ours'))\"")
tw_cmd_test(compare_serving_md_shows_latency_against_limits
  COMMAND ${TW} compare ${TW_SFX}
  OUT "Latency: the measured p99" OUT "\\| server / server +\\|" OUT "measured tok/s: the serving run's output tokens/s")
tw_cmd_test(compare_serving_against_an_offline_row JSON_OUT
  COMMAND ${TW} compare ${TW_SFX} --against mlperf-v5.1-llama3.1-8b-offline-b200x8 --format json
  CHECK "${TW_CJ} $TW_OUT \"r['rows'][0]['published_scenario'] == 'offline' and r['rows'][0]['published_ttft_limit_ms'] is None\" \"any('a published offline figure against a measured server run' in c for c in r['caveats'])\"")
