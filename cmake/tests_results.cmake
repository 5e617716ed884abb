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
tw_cmd_test(result_schema_kept_fixtures OUT "tw-test: PASS \\(8 file"
  COMMAND ${TW_PYTHON3} ${TW_CMD_DIR}/check_schema.py ${TW_FIXTURES}/single.json
  ${TW_FIXTURES}/sweep.json ${TW_FIXTURES}/window.json ${TW_FIXTURES}/preset.json
  ${TW_FIXTURES}/dump.json ${TW_FIXTURES}/incomplete.json ${TW_FIXTURES}/tp2.json
  ${TW_FIXTURES}/tpsweep.json)
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
  CHECK "${TW_CJ} ${TW_TR}/schema_moe_sweep.json \"r['schema_minor'] == 3 and len(rows) == 2\" \"all(x['scenario']['routing_skew'] == 2 and 'ep' not in x['scenario'] for x in rows)\" \"all(x['experts']['n_experts'] == 16 and x['experts']['experts_per_token'] == 3 and x['experts']['moe_layers'] == 2 for x in rows)\" \"[sum(x['experts']['load']) for x in rows] == [2 * (b * 5 + b * 3) * 3 * 2 for b in (1, 3)]\" \"all(3 <= x['experts']['decode_experts_per_layer'] <= 3 * x['scenario']['batch'] for x in rows)\""
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
