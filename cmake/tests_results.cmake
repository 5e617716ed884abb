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
    CHECK "${TW_PYTHON3} ${TW_CMD_DIR}/check_fixture.py ${TW_FIXTURES}/${c}.json ${TW_FX_OUT}/${c}.json${extra}")
endforeach()
if(MPI_C_FOUND)
  foreach(c tp2 tpsweep)
    tw_cmd_test(result_fixture_${c} OUT "tw-test: PASS" TIMEOUT 120 LABELS mpi nosan
      ENV ${TW_MPI_ENV}
      COMMAND sh ${TW_CMD_DIR}/fixture_run.sh ${c} ${TW} ${TW_FX_OUT}/${c}.json ${TW_MPIRUN}
      CHECK "${TW_PYTHON3} ${TW_CMD_DIR}/check_fixture.py ${TW_FIXTURES}/${c}.json ${TW_FX_OUT}/${c}.json")
  endforeach()
endif()
