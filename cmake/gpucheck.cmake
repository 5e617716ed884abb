# scripts/gpu-check survives its own limits (issue 14), checked without a GPU on the tree just
# built: a SIGKILL in the middle of a step leaves a valid partial result JSON and the log tarball
# in $OUT, a hanging step is stopped by its share of the budget, an unusable CUDA is a FAIL, and
# the default --plan fits (tests/gpu_check_kill.sh, ~30 s). Label nosan: it runs shell and
# Python, nothing that ASan would instrument.
if(TW_TESTS)
  add_test(NAME gpu_check_kill COMMAND ${CMAKE_SOURCE_DIR}/tests/gpu_check_kill.sh
    ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR})
  set_tests_properties(gpu_check_kill PROPERTIES TIMEOUT 150 LABELS "cpu;nosan")
endif()
