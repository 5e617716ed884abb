# GEMM part: the OpenBLAS baseline runner, a separate executable that `tokwatt bench gemm
# --baseline` spawns (so that OpenBLAS's own threads and environment never touch tokwatt).
# Built only when OpenBLAS and cblas.h were found; it sits beside tokwatt in bench/.
if(OPENBLAS_LIB AND OPENBLAS_INC)
  add_executable(baseline_openblas ${CMAKE_SOURCE_DIR}/bench/baseline_openblas.c)
  target_include_directories(baseline_openblas PRIVATE ${OPENBLAS_INC})
  target_link_libraries(baseline_openblas PRIVATE ${OPENBLAS_LIB} m)
  set_target_properties(baseline_openblas PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                                     ${CMAKE_BINARY_DIR}/bench)
  # tokwatt without its baseline would silently lose a column: build them together.
  add_dependencies(tokwatt baseline_openblas)
endif()

# The standalone kernel check (tests/standalone/kernels_check.c, no Criterion or jansson): what
# scripts/check-aarch64 runs under qemu-aarch64; built and run natively here too so that the
# check itself is exercised on every host.
if(TW_TESTS)
  add_executable(kernels_check ${CMAKE_SOURCE_DIR}/tests/standalone/kernels_check.c
                               ${CMAKE_SOURCE_DIR}/tests/tw_test_util.c)
  target_link_libraries(kernels_check PRIVATE tw)
  target_include_directories(kernels_check PRIVATE ${CMAKE_SOURCE_DIR}/tests)
  set_target_properties(kernels_check PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  # through tests/check_cmd.sh (as tw_cmd_test, defined later in cmake/tests.cmake): the exit
  # code as well as the output, since PASS_REGULAR_EXPRESSION alone ignores the exit code
  add_test(NAME kernels_check COMMAND sh ${CMAKE_SOURCE_DIR}/tests/check_cmd.sh --exit 0
           --out "kernels_check: PASS" --no-out "FAIL" -- $<TARGET_FILE:kernels_check>)
  set_tests_properties(kernels_check PROPERTIES LABELS "cpu" TIMEOUT 300)
endif()
