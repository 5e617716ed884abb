# Tensor-parallel inference tests over MPI (the mpi_tp and mpi_sub programs are built by
# comm.cmake's glob).
if(TW_TESTS AND MPI_C_FOUND)
  foreach(np 2 4)
    add_test(NAME mpi_tp_np${np} COMMAND ${TW_MPIRUN} -np ${np} $<TARGET_FILE:mpi_tp>)
    set_tests_properties(mpi_tp_np${np} PROPERTIES TIMEOUT 120 LABELS "mpi;nosan"
      ENVIRONMENT "${TW_MPI_ENV};TW_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
      PASS_REGULAR_EXPRESSION "tw-test: PASS" FAIL_REGULAR_EXPRESSION "tw-test: FAIL")
    # sub-communicators over ranks 0..n-1 (what a --tp sweep runs each degree on)
    add_test(NAME mpi_sub_np${np} COMMAND ${TW_MPIRUN} -np ${np} $<TARGET_FILE:mpi_sub>)
    set_tests_properties(mpi_sub_np${np} PROPERTIES TIMEOUT 60 LABELS "mpi;nosan"
      ENVIRONMENT "${TW_MPI_ENV}"
      PASS_REGULAR_EXPRESSION "tw-test: PASS" FAIL_REGULAR_EXPRESSION "tw-test: FAIL")
  endforeach()
  # the command end to end: rank 0 writes one result file with per-rank figures
  add_test(NAME mpi_run_tp2 COMMAND ${TW_MPIRUN} -np 2 $<TARGET_FILE:tokwatt> run --model tiny
    --tp 2 --prompt 9 --gen 5 --reps 1 --warmup 0 --threads 1 --format json
    --out ${CMAKE_BINARY_DIR}/test-results/mpi_run_tp2.json)
  set_tests_properties(mpi_run_tp2 PROPERTIES TIMEOUT 120 LABELS "mpi;nosan"
    ENVIRONMENT "${TW_MPI_ENV}" PASS_REGULAR_EXPRESSION "\"collective_share\"")
  # a rank count below --tp is a clear error
  add_test(NAME mpi_run_tp_mismatch COMMAND ${TW_MPIRUN} -np 2 $<TARGET_FILE:tokwatt> run
    --model tiny --tp 4 --prompt 4 --gen 2 --reps 1 --warmup 0)
  set_tests_properties(mpi_run_tp_mismatch PROPERTIES TIMEOUT 60 LABELS "mpi;nosan"
    ENVIRONMENT "${TW_MPI_ENV}" PASS_REGULAR_EXPRESSION "2 ranks were launched but --tp is 4")
  # a --tp list whose largest degree exceeds the launch, naming the numbers
  add_test(NAME mpi_run_tp_sweep_too_few COMMAND ${TW_MPIRUN} -np 2 $<TARGET_FILE:tokwatt> run
    --model tiny --tp 1,4 --prompt 4 --gen 2 --reps 1 --warmup 0)
  set_tests_properties(mpi_run_tp_sweep_too_few PROPERTIES TIMEOUT 60 LABELS "mpi;nosan"
    ENVIRONMENT "${TW_MPI_ENV}"
    PASS_REGULAR_EXPRESSION "2 ranks were launched but --tp is 1,4, whose largest degree 4 needs 4 ranks")

  # --tp sweeps in one launch: one row per (tp, dtype) in order, checked by a script (row count
  # and order, tp per row, per-rank figures of that degree, identical tokens at every degree).
  # np 3 with --tp 2,1: rank 2 sits out every degree, the order given is kept.
  find_program(TW_PYTHON3 python3)
  if(TW_PYTHON3)
    foreach(cfg "2;1,2" "3;2,1")
      list(GET cfg 0 np)
      list(GET cfg 1 tps)
      string(REPLACE "," "_" tag "${tps}")
      set(res ${CMAKE_BINARY_DIR}/test-results/mpi_run_tp_sweep_${tag}.json)
      add_test(NAME mpi_run_tp_sweep_np${np}_${tag} COMMAND sh -c
        "rm -f ${res} && ${MPIEXEC_EXECUTABLE} --oversubscribe --allow-run-as-root -np ${np} $<TARGET_FILE:tokwatt> run --model tiny --tp ${tps} --dtype fp32,bf16 --batch 3 --prompt 9 --gen 5 --reps 1 --warmup 0 --threads 1 --format json --out ${res} >/dev/null && ${TW_PYTHON3} ${CMAKE_SOURCE_DIR}/tests/mpi/check_tp_sweep.py ${res} ${tps} ${np} 2")
      set_tests_properties(mpi_run_tp_sweep_np${np}_${tag} PROPERTIES TIMEOUT 120
        LABELS "mpi;nosan" ENVIRONMENT "${TW_MPI_ENV}"
        PASS_REGULAR_EXPRESSION "tw-test: PASS" FAIL_REGULAR_EXPRESSION "tw-test: FAIL")
    endforeach()
  else()
    message(STATUS "python3 not found: the --tp sweep end-to-end checks are not registered")
  endif()
endif()
