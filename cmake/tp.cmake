# Tensor-parallel inference tests over MPI (the mpi_tp program is built by comm.cmake's glob).
if(TW_TESTS AND MPI_C_FOUND)
  foreach(np 2 4)
    add_test(NAME mpi_tp_np${np} COMMAND ${TW_MPIRUN} -np ${np} $<TARGET_FILE:mpi_tp>)
    set_tests_properties(mpi_tp_np${np} PROPERTIES TIMEOUT 120 LABELS "mpi;nosan"
      ENVIRONMENT "${TW_MPI_ENV};TW_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
      PASS_REGULAR_EXPRESSION "tw-test: PASS" FAIL_REGULAR_EXPRESSION "tw-test: FAIL")
  endforeach()
  # the command end to end: rank 0 writes one result file with per-rank figures
  add_test(NAME mpi_run_tp2 COMMAND ${TW_MPIRUN} -np 2 $<TARGET_FILE:tokwatt> run --model tiny
    --tp 2 --prompt 9 --gen 5 --reps 1 --warmup 0 --threads 1 --format json
    --out ${CMAKE_BINARY_DIR}/test-results/mpi_run_tp2.json)
  set_tests_properties(mpi_run_tp2 PROPERTIES TIMEOUT 120 LABELS "mpi;nosan"
    ENVIRONMENT "${TW_MPI_ENV}" PASS_REGULAR_EXPRESSION "\"collective_share\"")
  # a rank count that disagrees with --tp is a clear error
  add_test(NAME mpi_run_tp_mismatch COMMAND ${TW_MPIRUN} -np 2 $<TARGET_FILE:tokwatt> run
    --model tiny --tp 4 --prompt 4 --gen 2 --reps 1 --warmup 0)
  set_tests_properties(mpi_run_tp_mismatch PROPERTIES TIMEOUT 60 LABELS "mpi;nosan"
    ENVIRONMENT "${TW_MPI_ENV}" PASS_REGULAR_EXPRESSION "2 ranks were launched but --tp is 4")
endif()
