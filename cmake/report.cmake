# `tokwatt compare` and `tokwatt report` end to end: the command lines on the hand-written
# fixtures in tests/data/compare/, and the report page rendered in headless Chromium
# (tests/report_chromium.sh; skipped, exit 77, where chromium is not installed).
if(TW_TESTS)
  set(_cmp ${CMAKE_SOURCE_DIR}/tests/data/compare)
  add_test(NAME cli_compare_two COMMAND tokwatt compare ${_cmp}/base.json ${_cmp}/new.json
    --format csv)
  # e2e: 1000 -> 1100 (+10%) against a noise of 40: significant; decode 500 -> 505: not
  set_tests_properties(cli_compare_two PROPERTIES TIMEOUT 30 PASS_REGULAR_EXPRESSION
    ",decode tokens/s,500,505,5,\\+1\\.0%,20,not significant[^\n]*\n[^\n]*,e2e tokens/s,1000,1100,100,\\+10\\.0%,40,significant\n")
  add_test(NAME cli_compare_published COMMAND tokwatt compare ${_cmp}/base.json
    --against mlperf-v4.1-llama2-70b-offline-h100x8 --format json)
  # base.json: 1000 tokens/s on 2 devices; published 24525 on 8: per accelerator 500 / 3065.625
  set_tests_properties(cli_compare_published PROPERTIES TIMEOUT 30 PASS_REGULAR_EXPRESSION
    "\"ratio_tokens_per_s\": 0\\.163098")
  add_test(NAME cli_compare_unknown_id COMMAND tokwatt compare ${_cmp}/base.json --against nope)
  set_tests_properties(cli_compare_unknown_id PROPERTIES TIMEOUT 30 WILL_FAIL TRUE)
  add_test(NAME cli_report_fixtures COMMAND tokwatt report ${_cmp}/base.json ${_cmp}/new.json
    ${_cmp}/sweep.json --out ${CMAKE_BINARY_DIR}/test-results/report --print-md)
  set_tests_properties(cli_report_fixtures PROPERTIES TIMEOUT 30 PASS_REGULAR_EXPRESSION
    "\\| sweep.json row 3 \\| tiny \\|")
  add_test(NAME report_chromium COMMAND ${CMAKE_SOURCE_DIR}/tests/report_chromium.sh
    $<TARGET_FILE:tokwatt>)
  set_tests_properties(report_chromium PROPERTIES TIMEOUT 90 SKIP_RETURN_CODE 77
    LABELS "chromium")
endif()
