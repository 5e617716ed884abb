# Every command-level test, in one place: the tokwatt commands end to end, the MPI test programs
# and the scripts of tests/cmd. Each goes through tw_cmd_test, which runs it under
# tests/check_cmd.sh: the exact exit code is checked (a crash never passes, whatever it
# printed) as well as the output. CTest's PASS_REGULAR_EXPRESSION alone ignores the exit code
# and WILL_FAIL passes on a crash, so neither is used. (The Criterion suites tests/test_*.c are
# registered by CMakeLists.txt; the MPI programs are built by comm.cmake.)
if(NOT TW_TESTS)
  return()
endif()
enable_testing()
find_program(TW_PYTHON3 python3)
if(NOT TW_PYTHON3)
  message(FATAL_ERROR "python3 is needed by the command-level tests (scripts/deps installs it)")
endif()
set(TW_CHECK ${CMAKE_SOURCE_DIR}/tests/check_cmd.sh)
set(TW_CMD_DIR ${CMAKE_SOURCE_DIR}/tests/cmd)
set(TW_TR ${CMAKE_BINARY_DIR}/test-results) # scratch files of these tests
file(MAKE_DIRECTORY ${TW_TR})
set(TW_CMD_ENV "TW_SOURCE_DIR=${CMAKE_SOURCE_DIR}" "TW_BUILD_DIR=${CMAKE_BINARY_DIR}"
               "TW_TOKWATT=${CMAKE_BINARY_DIR}/bench/tokwatt")

# tw_cmd_test(NAME [EXIT code] [OUT re...] [ERR re...] [NO_OUT re...] [NO_ERR re...] [JSON_OUT]
#             [JSON_FILE f...] [RM path...] [CHECK shell-command...] [SKIP code] [NP ranks]
#             [TIMEOUT s] [LABELS l...] [ENV VAR=value...] COMMAND cmd args...)
# EXIT defaults to 0. NP runs COMMAND under mpirun -np NP (labels mpi and nosan). CHECK commands
# run after the command with $TW_OUT/$TW_ERR naming its captured stdout/stderr.
function(tw_cmd_test name)
  cmake_parse_arguments(T "JSON_OUT" "EXIT;SKIP;NP;TIMEOUT"
                        "OUT;ERR;NO_OUT;NO_ERR;JSON_FILE;RM;CHECK;LABELS;ENV;COMMAND" ${ARGN})
  if(NOT T_COMMAND)
    message(FATAL_ERROR "tw_cmd_test(${name}): no COMMAND")
  endif()
  if(NOT DEFINED T_EXIT)
    set(T_EXIT 0)
  endif()
  set(args --exit ${T_EXIT})
  foreach(kind OUT ERR NO_OUT NO_ERR JSON_FILE RM CHECK)
    string(TOLOWER ${kind} opt)
    string(REPLACE "_" "-" opt ${opt})
    foreach(v IN LISTS T_${kind})
      list(APPEND args --${opt} "${v}")
    endforeach()
  endforeach()
  if(T_JSON_OUT)
    list(APPEND args --json-out)
  endif()
  if(DEFINED T_SKIP)
    list(APPEND args --skip ${T_SKIP})
  endif()
  set(cmd ${T_COMMAND})
  set(labels ${T_LABELS})
  set(env ${TW_CMD_ENV} ${T_ENV})
  if(T_NP)
    set(cmd ${TW_MPIRUN} -np ${T_NP} ${T_COMMAND})
    list(APPEND labels mpi nosan)
    list(APPEND env ${TW_MPI_ENV})
  endif()
  if(NOT labels)
    set(labels cmd)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  add_test(NAME ${name} COMMAND ${TW_CHECK} ${args} -- ${cmd})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${labels}"
                       ENVIRONMENT "${env}")
  if(DEFINED T_SKIP)
    set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE ${T_SKIP})
  endif()
endfunction()

set(TW $<TARGET_FILE:tokwatt>)
set(TWQ ${CMAKE_BINARY_DIR}/bench/tokwatt) # for sh -c command lines
set(TW_TINY --model tiny --threads 1 --membw-gbps 10 --peak-gflops 10 --warmup 0)
string(REPLACE ";" " " TW_TINY_S "${TW_TINY}") # for sh -c command lines
# checkers, as one string each: CHECK command lines are shell text
set(TW_CJ "${TW_PYTHON3} ${TW_CMD_DIR}/check_json.py")
set(TW_CC "${TW_PYTHON3} ${TW_CMD_DIR}/check_csv.py")

# ---- the checker itself: it fails a command that prints the right thing but exits 1 or crashes
tw_cmd_test(check_cmd_selftest OUT "tw-test: PASS" COMMAND sh ${CMAKE_SOURCE_DIR}/tests/check_cmd_selftest.sh)

# ---- compare and report (fixtures in tests/data/compare) ---------------------------------------
set(_cmp ${CMAKE_SOURCE_DIR}/tests/data/compare)
# e2e: 1000 -> 1100 (+10%) against a noise of 40: significant; decode 500 -> 505: not; tokens/J
# has no spread (no per-repetition energy): unknown for that reason, not "fewer than 2 reps"
tw_cmd_test(cli_compare_two COMMAND ${TW} compare ${_cmp}/base.json ${_cmp}/new.json --format csv
  CHECK "${TW_CC} $TW_OUT --rows 6 --numeric baseline_median,new_median,change,change_rel --expr \"[x['verdict'] for x in rows if x['metric']=='decode tokens/s'] == ['not significant (within run-to-run noise)']\" --expr \"[x['verdict'] for x in rows if x['metric']=='e2e tokens/s'] == ['significant']\" --expr \"[x['change_rel'] for x in rows if x['metric']=='e2e tokens/s'] == ['0.1']\" --expr \"[x['verdict'] for x in rows if x['metric']=='e2e tokens/J'] == ['unknown (no per-repetition spread recorded for this metric)']\""
  NO_OUT "fewer than 2")
tw_cmd_test(cli_compare_two_md COMMAND ${TW} compare ${_cmp}/base.json ${_cmp}/new.json
  OUT "e2e tokens/s .* significant" NO_OUT "fewer than 2 repetitions")
# base.json: 1000 tokens/s on 2 devices; published 24525 on 8: per accelerator 500 / 3065.625
tw_cmd_test(cli_compare_published JSON_OUT OUT "\"ratio_tokens_per_s\": 0\\.163098"
  COMMAND ${TW} compare ${_cmp}/base.json --against mlperf-v4.1-llama2-70b-offline-h100x8
  --format json)
tw_cmd_test(cli_compare_published_csv
  COMMAND ${TW} compare ${_cmp}/base.json --against mlperf-v4.1-llama2-70b-offline-h100x8
  --format csv
  CHECK "${TW_CC} $TW_OUT --rows 2 --numeric published_tokens_per_s,measured_tokens_per_s,ratio_tokens_per_s,published_tokens_per_j_low,measured_tokens_per_j --has basis,published_id")
tw_cmd_test(cli_compare_unknown_id EXIT 2 ERR "nope" COMMAND ${TW} compare ${_cmp}/base.json
  --against nope)
# a regression gate: the new result (base.json) is 9% slower end to end than the baseline
# (new.json), beyond the noise: exit 3 past 5%, 0 with a 50% allowance
tw_cmd_test(cli_compare_fail_above EXIT 3 ERR "significant regression" OUT "REGRESSION"
  COMMAND ${TW} compare ${_cmp}/new.json ${_cmp}/base.json --fail-above 5)
tw_cmd_test(cli_compare_fail_above_within COMMAND ${TW} compare ${_cmp}/new.json ${_cmp}/base.json
  --fail-above 50 NO_OUT "REGRESSION")
tw_cmd_test(cli_compare_improvement_passes_gate COMMAND ${TW} compare ${_cmp}/base.json
  ${_cmp}/new.json --fail-above 1 NO_OUT "REGRESSION")
tw_cmd_test(cli_compare_fail_above_needs_two EXIT 2 ERR "--fail-above"
  COMMAND ${TW} compare ${_cmp}/base.json --fail-above 5)
# a warning on stderr for every difference between the two setups, and for an incomplete run
tw_cmd_test(cli_compare_warns_on_mismatch COMMAND ${TW} compare ${_cmp}/base.json
  ${_cmp}/other.json
  ERR "warning: model differs: baseline \"tiny\", new \"llama-3.1-8b\""
  ERR "warning: CPU differs" ERR "warning: backend differs: baseline \"cpu\", new \"cuda\""
  ERR "warning: weight dtype differs: baseline \"bf16\", new \"fp32\""
  ERR "warning: the new result .* is an incomplete run: SIGTERM"
  ERR "warning: host differs")
tw_cmd_test(cli_report_fixtures OUT "\\| sweep.json row 3 \\| tiny \\|"
  COMMAND ${TW} report ${_cmp}/base.json ${_cmp}/new.json ${_cmp}/sweep.json
  --out ${TW_TR}/report --print-md)
# a run with no power figure: the report is still written, the projection says why it is not drawn
tw_cmd_test(cli_report_no_power OUT "Not drawn: no row of these results has both e2e tokens/s"
  COMMAND ${CMAKE_SOURCE_DIR}/tests/report_no_power.sh ${TW} ${TW_TR}/report-no-power)
tw_cmd_test(report_chromium SKIP 77 TIMEOUT 90 LABELS chromium
  COMMAND ${CMAKE_SOURCE_DIR}/tests/report_chromium.sh ${TW})

# ---- tokwatt run: results that are never lost ----------------------------------------------------
tw_cmd_test(run_three_runs_same_second OUT "tw-test: PASS" TIMEOUT 120
  COMMAND sh ${TW_CMD_DIR}/three_runs.sh ${TW} ${TW_TR}/three_runs)
foreach(sig INT TERM HUP)
  tw_cmd_test(run_signal_${sig} OUT "tw-test: PASS" TIMEOUT 90
    COMMAND sh ${TW_CMD_DIR}/interrupt.sh ${TW} ${TW_TR}/signal_${sig} proc ${sig})
endforeach()
tw_cmd_test(run_write_fallback OUT "tw-test: PASS" TIMEOUT 90
  COMMAND sh ${TW_CMD_DIR}/write_fallback.sh ${TW} ${TW_TR}/fallback)
tw_cmd_test(run_dump_failure_keeps_result OUT "tw-test: PASS" TIMEOUT 90
  COMMAND bash ${TW_CMD_DIR}/dump_fail.sh ${TW} ${TW_TR}/dump_fail)
foreach(sig INT TERM)
  tw_cmd_test(export_sig${sig}_removes_temporary OUT "tw-test: PASS" TIMEOUT 120
    COMMAND sh ${TW_CMD_DIR}/export_interrupt.sh ${TW} ${TW_TR}/export_sig${sig} ${sig})
endforeach()
# the destination is checked before anything is measured (no engine is built)
tw_cmd_test(run_unwritable_out_refused_first EXIT 1 ERR "cannot write the result into /proc/"
  NO_ERR "engine ready" NO_ERR "measuring" COMMAND ${TW} run ${TW_TINY} --out /proc/tw-no/)
tw_cmd_test(run_read_only_checkout_refused_first EXIT 1
  ERR "cannot write the result into results" NO_ERR "engine ready"
  COMMAND sh -c "cd /proc && exec ${TWQ} run --model tiny --threads 1")
tw_cmd_test(run_no_room_for_dump_refused_first EXIT 1
  ERR "not enough disk space in .* for the logits dump" NO_ERR "engine ready"
  COMMAND ${TW} run --model ${CMAKE_SOURCE_DIR}/tests/data/huge-vocab.json --batch 4096 --gen 100
  --prompt 4 --threads 1 --membw-gbps 10 --peak-gflops 10 --out ${TW_TR}/nodump
  --dump-logits ${TW_TR}/nodump/l.npy)
# write errors on stdout are errors
foreach(c "info|info --quick"
          "run|run --model tiny --prompt 4 --gen 2 --reps 1 --warmup 0 --threads 1 --membw-gbps 10 --peak-gflops 10 --out ${TW_TR}/devfull/"
          "project|project --tokens-per-s 3066 --watts 700 --no-svg"
          "compare|compare ${_cmp}/base.json ${_cmp}/new.json"
          "bench_attention|bench attention --batch 1 --heads 2 --kv-heads 1 --head-dim 16 --seq 8 --reps 1"
          "run_help|run --help" "help|--help")
  string(REPLACE "|" ";" parts "${c}")
  list(GET parts 0 tag)
  list(GET parts 1 cmdline)
  tw_cmd_test(stdout_full_${tag} EXIT 1 ERR "writing standard output failed"
    COMMAND sh -c "exec ${TWQ} ${cmdline} > /dev/full")
endforeach()

# ---- inputs -------------------------------------------------------------------------------------
tw_cmd_test(run_model_dev_zero_refused EXIT 1 ERR "/dev/zero is not a regular file"
  COMMAND ${TW} run --model /dev/zero --out ${TW_TR}/x/)
tw_cmd_test(run_model_fifo_refused EXIT 1 ERR "is not a regular file \\(a FIFO\\)" TIMEOUT 20
  COMMAND sh -c "rm -f ${TW_TR}/fifo.json && mkfifo ${TW_TR}/fifo.json && exec ${TWQ} run --model ${TW_TR}/fifo.json --out ${TW_TR}/x/")
tw_cmd_test(run_model_oversized_refused EXIT 1 ERR "over the 256 MiB limit" TIMEOUT 20
  COMMAND sh -c "truncate -s 300M ${TW_TR}/big.json && ${TWQ} run --model ${TW_TR}/big.json --out ${TW_TR}/x/; rc=$?; rm -f ${TW_TR}/big.json; exit $rc")
tw_cmd_test(compare_dev_zero_refused EXIT 1 ERR "not a regular file"
  COMMAND ${TW} compare /dev/zero)
# a configs/devices.json that does not parse is an error before anything runs, not "energy: not
# measured"; the same for the projection's assumptions
tw_cmd_test(run_malformed_devices_json EXIT 1 ERR "devices.json:[0-9]+:[0-9]+: not valid JSON"
  NO_ERR "engine ready"
  COMMAND sh -c "rm -rf ${TW_TR}/badcfg && cp -r ${CMAKE_SOURCE_DIR}/configs ${TW_TR}/badcfg && echo '{\"devices\": [' > ${TW_TR}/badcfg/devices.json && TW_CONFIG_DIR=${TW_TR}/badcfg exec ${TWQ} run ${TW_TINY_S} --reps 1 --out ${TW_TR}/x/")
tw_cmd_test(run_malformed_assumptions_json EXIT 1 ERR "assumptions.json:[0-9]+:[0-9]+: not valid JSON"
  NO_ERR "engine ready"
  COMMAND sh -c "rm -rf ${TW_TR}/badcfg2 && cp -r ${CMAKE_SOURCE_DIR}/configs ${TW_TR}/badcfg2 && echo '{' > ${TW_TR}/badcfg2/assumptions.json && TW_CONFIG_DIR=${TW_TR}/badcfg2 exec ${TWQ} run ${TW_TINY_S} --reps 1 --watts 100 --out ${TW_TR}/x/")
foreach(case "comm_bogus|--comm bogus|--comm: 'bogus' is not auto, mpi, nccl, local or threads"
             "batch_trailing_comma|--batch 1,|--batch: '1,' is not a comma-separated integer list \\(an empty element\\)"
             "batch_empty_element|--batch 1,,2|an empty element"
             "watts_zero|--watts 0|--watts: 0 is out of range"
             "batch_too_large|--batch 100000|--batch: 100000 is out of range \\[1, 4096\\] \\(too large\\)"
             "seed_overflow|--seed 99999999999999999999999|--seed: .* out of range .*too large"
             "repeated_option|--batch 1 --batch 2|option --batch is given more than once"
             "out_txt|--out ${TW_TR}/res.txt|a result file name must end in .json"
             "power_nvml_on_cpu|--power nvml|--power nvml reads NVIDIA GPUs: it goes with --backend cuda"
             "ep_with_tp_sweep|--ep 2 --tp 1,2|--ep 2 goes with one --tp, 1 \\(attention replicated\\) or 2"
             "ep_with_other_tp|--ep 2 --tp 4|--ep 2 goes with one --tp"
             "ep_zero|--ep 0|--ep: 0 is out of range"
             "routing_skew_negative|--routing-skew -1|--routing-skew: -1 is out of range")
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 tag)
  list(GET parts 1 opts)
  list(GET parts 2 want)
  separate_arguments(opts UNIX_COMMAND "${opts}")
  tw_cmd_test(run_refuses_${tag} EXIT 2 ERR "${want}" ERR "try 'tokwatt run --help'"
    NO_ERR "engine ready" NO_ERR "unknown option"
    COMMAND ${TW} run --model tiny ${opts})
endforeach()
# --ep splits experts over launched ranks: without a launcher it is a bad argument
tw_cmd_test(run_ep_without_launcher EXIT 2
  ERR "no MPI launcher \\(1 rank\\) but --ep is 2: launch with mpirun -np 2 tokwatt run --ep 2"
  NO_ERR "engine ready" COMMAND ${TW} run --model tiny-mixtral --ep 2 --reps 1 --out ${TW_TR}/x/)
tw_cmd_test(run_out_txt_creates_nothing EXIT 2
  COMMAND sh -c "rm -rf ${TW_TR}/res2.txt && ${TWQ} run --model tiny --out ${TW_TR}/res2.txt; rc=$?; test ! -e ${TW_TR}/res2.txt || { echo created ${TW_TR}/res2.txt; exit 9; }; exit $rc")
tw_cmd_test(run_existing_result_file_refused EXIT 2 ERR "never overwritten"
  COMMAND sh -c "echo '{}' > ${TW_TR}/exists.json && exec ${TWQ} run --model tiny --out ${TW_TR}/exists.json")
tw_cmd_test(project_results_and_watts_refused EXIT 2
  ERR "--results FILE takes tokens/s and watts from the file: it does not go with"
  COMMAND ${TW} project --results ${_cmp}/base.json --watts 300 --no-svg)
tw_cmd_test(run_help_threads_zero_is_automatic OUT "--threads T +worker threads. 0 \\(the default\\) means automatic"
  COMMAND ${TW} run --help)
tw_cmd_test(export_proc_says_why EXIT 1 ERR "cannot write the export into /proc/x"
  NO_ERR "not enough disk space" COMMAND ${TW} export --model tiny --out /proc/x)
# errors keep their chain of contexts but carry source locations only with --verbose
tw_cmd_test(errors_without_source_paths EXIT 1 ERR "cannot open /no/such/config.json"
  NO_ERR "\\.c:[0-9]+" COMMAND ${TW} run --model /no/such/config.json)
tw_cmd_test(errors_with_source_paths_verbose EXIT 1 ERR "model\\.c:[0-9]+: .*cannot open /no/such"
  COMMAND ${TW} --verbose run --model /no/such/config.json)
tw_cmd_test(errors_with_source_paths_env EXIT 1 ERR "model\\.c:[0-9]+: " ENV TW_VERBOSE=1
  COMMAND ${TW} run --model /no/such/config.json)
# one default seed: the export without --seed is the model a run without --seed measures
tw_cmd_test(export_and_run_share_the_default_seed
  COMMAND sh -c "rm -rf ${TW_TR}/seed && ${TWQ} export --model tiny --out ${TW_TR}/seed/m >/dev/null && ${TWQ} run ${TW_TINY_S} --prompt 4 --gen 2 --reps 1 --out ${TW_TR}/seed/r.json >/dev/null && ${TW_PYTHON3} ${TW_CMD_DIR}/check_json.py ${TW_TR}/seed/m/tokwatt-export.json \"r['seed'] == 1\" && ${TW_PYTHON3} ${TW_CMD_DIR}/check_json.py ${TW_TR}/seed/r.json \"r['scenario']['seed'] == 1\"")

# ---- what users see -------------------------------------------------------------------------------
# progress on stderr with --progress (stderr is a file here), never on stdout; none without it
tw_cmd_test(run_progress_on_stderr_when_asked JSON_OUT
  ERR "# progress: building the engine \\(bf16\\): layer 3/3"
  ERR "# progress: row 1/2 .*repetition 1/2: prefill" ERR "# progress: row 2/2 .*decode step 1/4"
  ERR "ETA ~" NO_OUT "progress"
  RM ${TW_TR}/progress.json
  COMMAND ${TW} run ${TW_TINY} --batch 1,2 --prompt 6 --gen 5 --reps 2 --progress --format json
  --out ${TW_TR}/progress.json)
tw_cmd_test(run_no_progress_when_not_a_terminal NO_ERR "# progress" RM ${TW_TR}/noprogress.json
  COMMAND ${TW} run ${TW_TINY} --prompt 6 --gen 5 --reps 2 --out ${TW_TR}/noprogress.json)
# CSV: one row per combination, every metric of the JSON, plain numbers, units in the names
tw_cmd_test(run_csv_is_machine_readable RM ${TW_TR}/csv.json
  COMMAND ${TW} run ${TW_TINY} --batch 1,2 --prompt 5,7 --gen 3 --reps 2 --watts 250 --format csv
  --out ${TW_TR}/csv.json
  CHECK "${TW_CC} $TW_OUT --rows 4 --numeric metrics.prefill_tokens_per_s,metrics.decode_tokens_per_s,metrics.e2e_tokens_per_s,metrics.ttft_s,metrics.tpot_s.p50,metrics.tpot_s.p99,energy.e2e.j_per_token,scenario.batch,scenario.prompt,memory.params,roofline.membw_gbps --has projection_headline,energy.label --expr \"[int(r['scenario.batch']) for r in rows] == [1,1,2,2]\""
  CHECK "${TW_CJ} ${TW_TR}/csv.json \"len(rows) == 4\"")
tw_cmd_test(info_csv_is_machine_readable COMMAND ${TW} info --quick --format csv
  CHECK "${TW_CC} $TW_OUT --rows 1 --numeric cpu_cores,threads --has cpu_model,cpu_features,power_sensors.rapl.readable")
tw_cmd_test(project_csv_is_machine_readable
  COMMAND ${TW} project --tokens-per-s 3066 --watts 700 --no-svg --format csv
  CHECK "${TW_CC} $TW_OUT --rows 18 --numeric year,demand_tokens_per_s,devices,it_mw,facility_mw,dc_additions_mw,share_of_additions,installed_devices --has demand_bound_name,basis,scenario --expr \"'demand_bound' not in rows[0]\"")
# the headline of a device too slow for the demand says so, with balanced parentheses and one
# "assumed"
tw_cmd_test(project_headline_device_could_not_serve JSON_OUT
  COMMAND ${TW} project --tokens-per-s 0.39 --watts 280 --no-svg --format json
  CHECK "${TW_CJ} $TW_OUT \"'this device could not serve that demand' in r['headline']\" \"r['headline'].count('(') == r['headline'].count(')')\" \"'assumed: assumed' not in r['headline'].lower()\" \"r['scenarios']['power'][-1]['exceeds_supply'] is True\"")
tw_cmd_test(project_headline_feasible_device JSON_OUT
  COMMAND ${TW} project --tokens-per-s 3066 --watts 700 --no-svg --format json
  CHECK "${TW_CJ} $TW_OUT \"'could not serve' not in r['headline']\" \"r['headline'].count('(') == r['headline'].count(')')\" \"' takes ' in r['headline']\"")
tw_cmd_test(run_provenance_records_c_flags RM ${TW_TR}/cflags.json
  COMMAND ${TW} run ${TW_TINY} --prompt 4 --gen 2 --reps 1 --out ${TW_TR}/cflags.json
  CHECK "${TW_CJ} ${TW_TR}/cflags.json \"re.search('-O[0-9s]', r['provenance']['c_flags'])\" \"'-Wall' in r['provenance']['c_flags']\"")

# ---- MPI: test programs, collective benchmarks, tensor-parallel runs -----------------------------
if(MPI_C_FOUND)
  # every collective x dtype x reduction against a serial float64 reference
  foreach(np 2 4)
    tw_cmd_test(mpi_coll_np${np} NP ${np} NO_OUT "tw-test: FAIL" COMMAND $<TARGET_FILE:mpi_coll>)
  endforeach()
  # the same with the direct-exchange path for small all-reduces off (all through MPI_Iallreduce)
  tw_cmd_test(mpi_coll_nbc_np3 NO_OUT "tw-test: FAIL"
    COMMAND ${TW_MPIRUN} -x TW_COMM_MPI_SMALL_BYTES=0 -np 3 $<TARGET_FILE:mpi_coll>
    LABELS mpi nosan ENV ${TW_MPI_ENV})
  # a rank with a different configuration: every rank fails naming rank 1
  foreach(np 2 4)
    tw_cmd_test(mpi_mismatch_np${np} NP ${np} OUT "tw-test: PASS" NO_OUT "tw-test: FAIL"
      COMMAND $<TARGET_FILE:mpi_mismatch>)
  endforeach()
  # A rank that exits early. With mpirun's own abort on a non-zero exit switched off, the
  # survivors must detect it themselves (timeout 3 s) and name it; they end the job with exit 3.
  tw_cmd_test(mpi_deadpeer_np4 EXIT 3 TIMEOUT 30
    OUT "tw-test: rank [023] detected the failure in [0-9.]+ s: .*did not complete within 3 s.*rank\\(s\\) 1"
    NO_OUT "tw-test: FAIL" LABELS mpi nosan ENV ${TW_MPI_ENV}
    COMMAND ${TW_MPIRUN} --mca orte_abort_on_non_zero_status 0 -np 4 $<TARGET_FILE:mpi_failure>
    exit 3)
  # the same under mpirun's defaults: the launcher ends the job (exit 1), naming the rank
  tw_cmd_test(mpi_deadpeer_default_np2 NP 2 EXIT 1 TIMEOUT 30 ERR "Process name: .*,1.$"
    COMMAND $<TARGET_FILE:mpi_failure> exit 3)
  # a rank that stalls (sleeps past the bound): the others time out naming it
  tw_cmd_test(mpi_stall_np4 NP 4 EXIT 3 TIMEOUT 30
    OUT "tw-test: rank [013] detected the failure in [0-9.]+ s: .*did not complete within 2 s.*rank\\(s\\) 2"
    NO_OUT "tw-test: FAIL" COMMAND $<TARGET_FILE:mpi_failure> stall 2)
  foreach(np 2 4)
    tw_cmd_test(mpi_tp_np${np} NP ${np} TIMEOUT 120 OUT "tw-test: PASS" NO_OUT "tw-test: FAIL"
      ENV TW_SOURCE_DIR=${CMAKE_SOURCE_DIR} COMMAND $<TARGET_FILE:mpi_tp>)
    # sub-communicators over ranks 0..n-1 (what a --tp sweep runs each degree on)
    tw_cmd_test(mpi_sub_np${np} NP ${np} OUT "tw-test: PASS" NO_OUT "tw-test: FAIL"
      COMMAND $<TARGET_FILE:mpi_sub>)
  endforeach()

  # the benchmark command end to end, checked results, JSON; and the fabric gate failing (exit 3)
  tw_cmd_test(mpi_bench_allreduce_np2 NP 2 OUT "# Avg bus bandwidth" NO_OUT "wrong results"
    NO_ERR "error" COMMAND ${TW} bench allreduce -b 8 -e 1M -f 16 -n 5 -w 1 -c 1)
  foreach(c allgather reducescatter broadcast alltoall)
    tw_cmd_test(mpi_bench_${c}_np4 NP 4 OUT "# Avg bus bandwidth" NO_OUT "wrong results"
      COMMAND ${TW} bench ${c} -b 1K -e 64K -f 8 -n 3 -w 1 -d bf16 -o max)
  endforeach()
  tw_cmd_test(mpi_bench_expect_fail_np2 NP 2 EXIT 3 OUT "FAIL"
    COMMAND ${TW} bench allreduce -b 1M -e 4M -n 3 -w 1 --expect-busbw 100000 --expect-from 1M)

  # tokwatt run under mpirun: rank 0 writes one result file with per-rank figures
  tw_cmd_test(mpi_run_tp2 NP 2 TIMEOUT 120 JSON_OUT RM ${TW_TR}/mpi_run_tp2.json
    COMMAND ${TW} run ${TW_TINY} --tp 2 --prompt 9 --gen 5 --reps 1 --format json
    --out ${TW_TR}/mpi_run_tp2.json
    CHECK "${TW_CJ} ${TW_TR}/mpi_run_tp2.json \"r['complete'] is True\" \"len(r['ranks']) == 2\" \"r['metrics']['collective_share'] > 0\"")
  # expert parallelism (doc/MOE.md): the tiny Mixtral's 4 experts over 2 ranks, attention
  # replicated (--tp 1) or tensor-parallel over the same ranks (--tp 2). The tokens, the expert
  # load and the decode bytes must be those of the same run on one rank (run by the CHECK as the
  # reference), the all-to-alls counted, and both files valid against the schema.
  set(_ep_run run --model tiny-mixtral --threads 1 --membw-gbps 10 --peak-gflops 10 --batch 3
      --prompt 7 --gen 6 --reps 2 --warmup 0 --power none)
  string(REPLACE ";" " " _ep_run_s "${_ep_run}")
  foreach(tp 1 2)
    set(res ${TW_TR}/mpi_run_ep2_tp${tp}.json)
    set(ref ${TW_TR}/mpi_run_ep2_tp${tp}_one_rank.json)
    set(attn "replicated")
    if(tp EQUAL 2)
      set(attn "tensor-parallel over the same ranks")
    endif()
    tw_cmd_test(mpi_run_ep2_tp${tp} NP 2 TIMEOUT 120 RM ${res}
      COMMAND ${TW} ${_ep_run} --ep 2 --tp ${tp} --out ${res}
      ERR "expert parallel over 2 ranks \\(attention ${attn}\\), communicator mpi"
      OUT "experts: [0-9.]+ of 4 reached per MoE layer by a decode step"
      OUT "expert parallel over 2 ranks: all-to-all [0-9.]+% of the measured time"
      OUT "tensor/expert parallel: 2 ranks over mpi"
      CHECK "${TW_CJ} ${res} \"r['complete'] is True\" \"r['scenario']['ep'] == 2 and r['scenario']['tp'] == ${tp} and r['scenario']['devices'] == 2\" \"len(r['ranks']) == 2 and r['plan']['per_rank'] is True\" \"r['experts']['expert_parallel']['ep'] == 2\" \"r['experts']['expert_parallel']['alltoall_calls'] > 0 and r['experts']['expert_parallel']['alltoall_bytes'] > 0\" \"sum(r['experts']['load']) == 2 * (3 * 7 + 3 * 5) * 2 * 2\""
      CHECK "rm -f ${ref} && ${TWQ} ${_ep_run_s} --out ${ref} >/dev/null 2>&1 && ${TW_PYTHON3} ${TW_CMD_DIR}/check_same.py ${res} ${ref} prompt_tokens generated_tokens experts.load experts.load_per_layer experts.decode_experts_per_layer metrics.decode_bytes_per_step"
      CHECK "${TW_CJ} ${ref} \"'expert_parallel' not in r['experts'] and 'ep' not in r['scenario']\""
      CHECK "${TWQ} compare ${res} ${ref} 2>&1 >/dev/null | grep -q 'warning: expert parallelism differs: baseline --ep 2, new --ep 1'"
      CHECK "${TW_PYTHON3} ${TW_CMD_DIR}/check_schema.py ${res} ${ref}")
  endforeach()
  # --ep needs as many ranks, and a model with experts that it divides (exit 2, a bad argument)
  tw_cmd_test(mpi_run_ep_too_few_ranks NP 2 EXIT 2 ERR "2 ranks were launched but --ep is 4"
    COMMAND ${TW} run --model tiny-mixtral --ep 4 --prompt 4 --gen 2 --reps 1 --warmup 0)
  tw_cmd_test(mpi_run_ep_dense_model NP 2 EXIT 2 ERR "--ep 2: tiny has no experts"
    COMMAND ${TW} run --model tiny --ep 2 --prompt 4 --gen 2 --reps 1 --warmup 0)
  # a rank count below --tp is a clear error (exit 2, a bad argument)
  tw_cmd_test(mpi_run_tp_mismatch NP 2 EXIT 2 ERR "2 ranks were launched but --tp is 4"
    COMMAND ${TW} run --model tiny --tp 4 --prompt 4 --gen 2 --reps 1 --warmup 0)
  # ranks on different CPU SIMD levels (rank 1 forced to portable C) are refused by name: they
  # would shard one computation with two roundings
  tw_cmd_test(mpi_run_simd_mismatch EXIT 2 LABELS mpi nosan ENV ${TW_MPI_ENV}
    ERR "rank 0: the CPU SIMD level .tokwatt info names it, TW_SIMD=LEVEL on every rank sets it. differs across ranks: rank.s. 1 disagree"
    COMMAND ${TW_MPIRUN} -np 1 ${TW} run ${TW_TINY} --tp 2 --prompt 4 --gen 2 --reps 1 :
            -np 1 -x TW_SIMD=portable ${TW} run ${TW_TINY} --tp 2 --prompt 4 --gen 2 --reps 1)
  tw_cmd_test(mpi_run_tp_sweep_too_few NP 2 EXIT 2
    ERR "2 ranks were launched but --tp is 1,4, whose largest degree 4 needs 4 ranks"
    COMMAND ${TW} run --model tiny --tp 1,4 --prompt 4 --gen 2 --reps 1 --warmup 0)
  # --tp sweeps in one launch: one row per (tp, dtype) in order, checked by a script (row count
  # and order, tp per row, per-rank figures of that degree, identical tokens at every degree).
  # np 3 with --tp 2,1: rank 2 sits out every degree, the order given is kept.
  foreach(cfg "2;1,2" "3;2,1")
    list(GET cfg 0 np)
    list(GET cfg 1 tps)
    string(REPLACE "," "_" tag "${tps}")
    set(res ${TW_TR}/mpi_run_tp_sweep_${tag}.json)
    tw_cmd_test(mpi_run_tp_sweep_np${np}_${tag} NP ${np} TIMEOUT 120 RM ${res}
      COMMAND ${TW} run ${TW_TINY} --tp ${tps} --dtype fp32,bf16 --batch 3 --prompt 9 --gen 5
      --reps 1 --format json --out ${res}
      CHECK "${TW_PYTHON3} ${CMAKE_SOURCE_DIR}/tests/mpi/check_tp_sweep.py ${res} ${tps} ${np} 2")
  endforeach()
  # a signal to the job (Ctrl-C to mpirun), to rank 0 alone, to rank 1 alone: rank 0 writes
  # what was measured, marked incomplete with the signal and the rank, within a few seconds
  foreach(mode job rank0 rank1)
    if(mode STREQUAL "job")
      set(sig INT)
    else()
      set(sig TERM)
    endif()
    tw_cmd_test(mpi_run_signal_${mode} OUT "tw-test: PASS" TIMEOUT 90 LABELS mpi nosan
      ENV ${TW_MPI_ENV}
      COMMAND sh ${TW_CMD_DIR}/interrupt.sh ${TW} ${TW_TR}/mpi_signal_${mode} ${mode} ${sig}
      ${TW_MPIRUN})
  endforeach()
  # two ranks on one host share its (assumed socket) power: counted once, so the energy block
  # and the headline agree (per device: the e2e tokens/s of the host at its watts)
  tw_cmd_test(mpi_run_shared_host_power_counted_once NP 2 TIMEOUT 120
    RM ${TW_TR}/mpi_power.json
    COMMAND ${TW} run ${TW_TINY} --tp 2 --prompt 9 --gen 9 --reps 2 --watts 100
    --out ${TW_TR}/mpi_power.json
    CHECK "${TW_CJ} ${TW_TR}/mpi_power.json \"r['energy']['devices'] == 1\" \"r['energy']['ranks'] == 2\" \"abs(r['energy']['e2e']['mean_power_w'] - 100) < 1e-6\" \"abs(float(re.search('at ([0-9.e+]+) tokens/s and 100 W', r['projection_headline']).group(1)) / r['metrics']['e2e_tokens_per_s'] - 1) < 1e-3\"")
endif()
