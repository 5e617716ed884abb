# Serving scenarios (issue 15, doc/SERVING.md): `tokwatt run --scenario ...` end to end on the tiny
# model. Uses tw_cmd_test, TW, TW_CJ and TW_TR (cmake/tests.cmake, read before this file). The
# result files go to serve-results/ (outside test-results, whose every file must validate against
# the schema: the serving block's schema is the result side's, checked by serve_result_schema
# once it exists).
if(NOT TW_TESTS)
  return()
endif()
set(TW_SV ${CMAKE_BINARY_DIR}/serve-results)
file(MAKE_DIRECTORY ${TW_SV})
set(TW_SV_TINY --model tiny --dtype fp32 --threads 1 --membw-gbps 10 --peak-gflops 10 --power none)

# offline: every request at once, chunked prefill mixed with decodes; every block free at the end
tw_cmd_test(serve_offline_tiny RM ${TW_SV}/offline.json TIMEOUT 120
  OUT "Successful requests: +7" OUT "Output token throughput \\(tok/s\\)" OUT "P99 TPOT \\(ms\\)"
  OUT "KV cache: .* 0 leaked"
  COMMAND ${TW} run ${TW_SV_TINY} --scenario offline --requests 7 --lengths uniform:4-40,2-12
    --max-batch 4 --step-tokens 16 --kv-block 8 --out ${TW_SV}/offline.json
  CHECK "${TW_CJ} ${TW_SV}/offline.json \"r['serving']['scenario'] == 'offline'\" \"r['serving']['summary']['n_measured'] == 7\" \"len(r['serving']['requests']) == 7\" \"r['serving']['kv_cache']['blocks_leaked'] == 0\" \"r['serving']['complete'] is True\" \"r['complete'] is True\" \"r['serving']['step_token_budget'] == 16\" \"r['serving']['kv_cache']['block_tokens'] == 8\"")

# server: Poisson arrivals, limits given: the constraint and goodput are reported
tw_cmd_test(serve_server_given_limits RM ${TW_SV}/server.json TIMEOUT 120
  OUT "Constraint met: +(yes|NO)" OUT "Request goodput \\(req/s\\)" OUT "from: +given"
  COMMAND ${TW} run ${TW_SV_TINY} --scenario server --rate 50 --requests 8 --warmup-requests 2
    --lengths fixed:16,4 --ttft-ms 5000 --tpot-ms 2000 --out ${TW_SV}/server.json
  CHECK "${TW_CJ} ${TW_SV}/server.json \"r['serving']['summary']['n_measured'] == 8\" \"r['serving']['summary']['n_warmup_excluded'] == 2\" \"abs(r['serving']['rate_rps'] - 50) < 1e-9\"")

# closed loop with preemption under a small pool
tw_cmd_test(serve_concurrency_preempt RM ${TW_SV}/conc.json TIMEOUT 120
  OUT "Successful requests: +6"
  COMMAND ${TW} run ${TW_SV_TINY} --scenario concurrency --concurrency 3 --requests 6
    --lengths uniform:10-40,2-12 --max-batch 3 --kv-block 5 --kv-blocks 12 --preempt
    --out ${TW_SV}/conc.json
  CHECK "${TW_CJ} ${TW_SV}/conc.json \"r['serving']['kv_cache']['blocks'] == 12\" \"r['serving']['kv_cache']['blocks_peak'] <= 12\" \"r['serving']['kv_cache']['blocks_leaked'] == 0\"")

# the MLPerf limits of a preset's model come from configs/serving/mlperf-limits.json
tw_cmd_test(serve_limits_from_file RM ${TW_SV}/limits.json TIMEOUT 120
  OUT "Limits: +TTFT 2000 ms, TPOT 100 ms at p99" OUT "from: +mlcommons/inference"
  COMMAND ${TW} run ${TW_SV_TINY} --scenario server --rate 100 --requests 4 --lengths fixed:8,3
    --limits-model llama3_1-8b --out ${TW_SV}/limits.json)

# the capacity search: bounded trials, each kept; a limit no rate can meet is reported as such
tw_cmd_test(serve_find_rate_tiny RM ${TW_SV}/findrate.json TIMEOUT 240
  OUT "Max rate meeting the limits: +(found|at-cap|trials-exhausted)" OUT "trial +1:"
  COMMAND ${TW} run ${TW_SV_TINY} --scenario server --find-rate --rate 20 --max-rate 400
    --max-trials 5 --min-requests 8 --lengths fixed:8,3 --ttft-ms 200 --tpot-ms 100
    --out ${TW_SV}/findrate.json
  CHECK "${TW_CJ} ${TW_SV}/findrate.json \"r['serving']['findrate']['verdict'] in ('found', 'at-cap', 'trials-exhausted')\" \"1 <= len(r['serving']['findrate']['trials']) <= 5\"")
tw_cmd_test(serve_find_rate_never_meets RM ${TW_SV}/never.json TIMEOUT 240
  OUT "never-meets" OUT "trial +[1-4]:.*failed" NO_OUT "trial +5:"
  COMMAND ${TW} run ${TW_SV_TINY} --scenario server --find-rate --rate 40 --min-rate 10
    --max-trials 4 --min-requests 4 --lengths fixed:8,3 --ttft-ms 0.001 --tpot-ms 0.001
    --out ${TW_SV}/never.json)

# refused before anything runs: a request the KV cache can never hold, named; bad options
tw_cmd_test(serve_refuses_too_long EXIT 2 ERR "request 0 \\(input 80, output 10 tokens.*never be served"
  NO_OUT "Serving Benchmark" RM ${TW_SV}/never-run
  COMMAND ${TW} run ${TW_SV_TINY} --scenario server --kv-blocks 2 --requests 4
    --lengths fixed:80,10 --out ${TW_SV}/never-run
  CHECK "test ! -e ${TW_SV}/never-run || test -z \"$(ls -A ${TW_SV}/never-run)\"")
tw_cmd_test(serve_bad_scenario EXIT 2 ERR "--scenario: 'bogus' is not offline"
  COMMAND ${TW} run ${TW_SV_TINY} --scenario bogus --out ${TW_SV})
tw_cmd_test(serve_bad_lengths EXIT 2 ERR "--lengths fixed:8: fixed:INPUT,OUTPUT expected"
  COMMAND ${TW} run ${TW_SV_TINY} --scenario offline --lengths fixed:8 --out ${TW_SV})
tw_cmd_test(serve_find_rate_needs_server EXIT 2 ERR "--find-rate searches a Poisson rate"
  COMMAND ${TW} run ${TW_SV_TINY} --scenario offline --find-rate --out ${TW_SV})
tw_cmd_test(serve_limits_in_pairs EXIT 2 ERR "--ttft-ms and --tpot-ms go together"
  COMMAND ${TW} run ${TW_SV_TINY} --scenario server --ttft-ms 100 --out ${TW_SV})

# SIGINT during a server run keeps every finished request's figures
tw_cmd_test(serve_sigint_keeps_finished OUT "tw-test: PASS" TIMEOUT 90
  COMMAND sh ${TW_CMD_DIR}/serve_interrupt.sh ${TW} ${TW_SV}/sigint)

# the files above against the result schema (skipped until the schema describes "serving")
tw_cmd_test(serve_result_schema OUT "tw-test: PASS" SKIP 77
  COMMAND ${TW_PYTHON3} ${TW_CMD_DIR}/serve_schema.py ${CMAKE_SOURCE_DIR}/doc/result.schema.json
    ${TW_SV}/offline.json ${TW_SV}/server.json ${TW_SV}/conc.json ${TW_SV}/findrate.json
    ${TW_SV}/sigint/out/r.json)
set_tests_properties(serve_result_schema PROPERTIES DEPENDS
  "serve_offline_tiny;serve_server_given_limits;serve_concurrency_preempt;serve_find_rate_tiny;serve_sigint_keeps_finished")

# tensor parallelism: rank 0 plans and broadcasts each step; the two ranks serve together
if(MPI_C_FOUND)
  tw_cmd_test(serve_tp2_offline NP 2 TIMEOUT 180 RM ${TW_SV}/tp2.json
    OUT "Successful requests: +5" OUT "KV cache: .* 0 leaked"
    COMMAND ${TW} run ${TW_SV_TINY} --tp 2 --scenario offline --requests 5
      --lengths uniform:4-30,2-8 --max-batch 3 --step-tokens 12 --out ${TW_SV}/tp2.json)
endif()

# a serving row as CSV: one line, the aggregates as numeric cells, no column per request (the
# JSON keeps the requests; 10 requests would otherwise add 90 columns)
tw_cmd_test(serve_csv_one_row_no_request_columns RM ${TW_SV}/csv.json
  COMMAND ${TW} run ${TW_SV_TINY} --scenario server --rate 20 --requests 10 --lengths fixed:8,4
  --format csv --out ${TW_SV}/csv.json
  CHECK "${TW_CC} $TW_OUT --rows 1 --numeric serving.summary.ttft_s.p99,serving.summary.n_measured --expr \"not any(k.startswith('serving.requests.') for k in rows[0])\" --expr \"int(rows[0]['serving.summary.n_measured']) == 10\"")
