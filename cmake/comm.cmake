# Communicators (issue 5): NCCL detection for harness/comm/comm_nccl.c, the bare MPI_Allreduce
# baseline, and the MPI-launched tests (ctest label "mpi"; also "nosan": OpenMPI is noisy under
# ASan).

# ---- NCCL: CUDA toolkit dirs, then $NCCL_HOME / -DTW_NCCL_ROOT (pip's nvidia-nccl ships only
# libnccl.so.2, hence the versioned name) ----
set(TW_NCCL_ROOT "" CACHE PATH "Folder holding include/nccl.h and lib/libnccl.so*")
set(TW_HAVE_NCCL OFF)
if(TW_HAVE_CUDA)
  find_path(TW_NCCL_INCLUDE_DIR nccl.h
    HINTS ${TW_NCCL_ROOT} $ENV{NCCL_HOME} ${CUDAToolkit_INCLUDE_DIRS}
    PATH_SUFFIXES include
    PATHS /usr/local/cuda /usr)
  find_library(TW_NCCL_LIBRARY NAMES nccl libnccl.so.2
    HINTS ${TW_NCCL_ROOT} $ENV{NCCL_HOME} ${CUDAToolkit_LIBRARY_DIR}
    PATH_SUFFIXES lib lib64
    PATHS /usr/local/cuda /usr)
  if(TW_NCCL_INCLUDE_DIR AND TW_NCCL_LIBRARY)
    set(TW_HAVE_NCCL ON)
    target_include_directories(tw PRIVATE ${TW_NCCL_INCLUDE_DIR})
    target_compile_definitions(tw PRIVATE TW_HAVE_NCCL=1)
    target_link_libraries(tw PUBLIC ${TW_NCCL_LIBRARY})
    list(APPEND TW_FOUND "NCCL (${TW_NCCL_LIBRARY})")
  else()
    list(APPEND TW_MISSING "NCCL (no nccl.h/libnccl: set NCCL_HOME or -DTW_NCCL_ROOT)")
  endif()
endif()

if(MPI_C_FOUND)
  # The bare MPI_Allreduce loop that `tokwatt bench allreduce` is compared against.
  add_executable(tw_baseline_mpi_allreduce ${CMAKE_SOURCE_DIR}/bench/baseline_mpi_allreduce.c)
  target_link_libraries(tw_baseline_mpi_allreduce PRIVATE MPI::MPI_C)
  set_target_properties(tw_baseline_mpi_allreduce PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)
endif()

if(TW_TESTS AND MPI_C_FOUND)
  enable_testing()
  set(TW_MPIRUN ${MPIEXEC_EXECUTABLE} --oversubscribe --allow-run-as-root)
  set(TW_MPI_ENV "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1")
  file(GLOB TW_MPI_TEST_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/mpi/mpi_*.c)
  foreach(src ${TW_MPI_TEST_SRC})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src} ${CMAKE_SOURCE_DIR}/tests/tw_test_util.c)
    target_link_libraries(${name} PRIVATE tw)
    target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests)
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  endforeach()

  # every collective x dtype x reduction against a serial float64 reference
  foreach(np 2 4)
    add_test(NAME mpi_coll_np${np} COMMAND ${TW_MPIRUN} -np ${np} $<TARGET_FILE:mpi_coll>)
    set_tests_properties(mpi_coll_np${np} PROPERTIES TIMEOUT 60)
  endforeach()
  # the same with the direct-exchange path for small all-reduces off (all through MPI_Iallreduce)
  add_test(NAME mpi_coll_nbc_np3 COMMAND ${TW_MPIRUN} -x TW_COMM_MPI_SMALL_BYTES=0 -np 3
    $<TARGET_FILE:mpi_coll>)
  set_tests_properties(mpi_coll_nbc_np3 PROPERTIES TIMEOUT 60)
  # a rank with a different configuration: every rank fails naming rank 1
  add_test(NAME mpi_mismatch_np2 COMMAND ${TW_MPIRUN} -np 2 $<TARGET_FILE:mpi_mismatch>)
  add_test(NAME mpi_mismatch_np4 COMMAND ${TW_MPIRUN} -np 4 $<TARGET_FILE:mpi_mismatch>)
  # A rank that exits early. With mpirun's own abort on a non-zero exit switched off, the
  # survivors must detect it themselves (timeout 3 s) and name it. The program checks the bound.
  add_test(NAME mpi_deadpeer_np4 COMMAND ${TW_MPIRUN} --mca orte_abort_on_non_zero_status 0
    -np 4 $<TARGET_FILE:mpi_failure> exit 3)
  set_tests_properties(mpi_deadpeer_np4 PROPERTIES TIMEOUT 30
    PASS_REGULAR_EXPRESSION "tw-test: rank [023] detected the failure in [0-9.]+ s: .*did not complete within 3 s.*rank\\(s\\) 1"
    FAIL_REGULAR_EXPRESSION "tw-test: FAIL")
  # the same under mpirun's defaults: the job ends within the bound, the launcher naming the rank
  add_test(NAME mpi_deadpeer_default_np2 COMMAND ${TW_MPIRUN} -np 2 $<TARGET_FILE:mpi_failure>
    exit 3)
  set_tests_properties(mpi_deadpeer_default_np2 PROPERTIES TIMEOUT 30 WILL_FAIL TRUE)
  # a rank that stalls (sleeps past the bound): the others time out naming it
  add_test(NAME mpi_stall_np4 COMMAND ${TW_MPIRUN} -np 4 $<TARGET_FILE:mpi_failure> stall 2)
  set_tests_properties(mpi_stall_np4 PROPERTIES TIMEOUT 30
    PASS_REGULAR_EXPRESSION "tw-test: rank [013] detected the failure in [0-9.]+ s: .*did not complete within 2 s.*rank\\(s\\) 2"
    FAIL_REGULAR_EXPRESSION "tw-test: FAIL")

  # the benchmark command end to end, checked results, JSON; and the fabric gate failing
  add_test(NAME mpi_bench_allreduce_np2 COMMAND ${TW_MPIRUN} -np 2 $<TARGET_FILE:tokwatt> bench
    allreduce -b 8 -e 1M -f 16 -n 5 -w 1 -c 1)
  set_tests_properties(mpi_bench_allreduce_np2 PROPERTIES TIMEOUT 60
    PASS_REGULAR_EXPRESSION "# Avg bus bandwidth" FAIL_REGULAR_EXPRESSION "wrong results|error")
  add_test(NAME mpi_bench_colls_np4 COMMAND sh -c
    "for c in allgather reducescatter broadcast alltoall; do ${MPIEXEC_EXECUTABLE} --oversubscribe --allow-run-as-root -np 4 $<TARGET_FILE:tokwatt> bench $c -b 1K -e 64K -f 8 -n 3 -w 1 -d bf16 -o max || exit 1; done")
  set_tests_properties(mpi_bench_colls_np4 PROPERTIES TIMEOUT 60)
  add_test(NAME mpi_bench_expect_fail_np2 COMMAND sh -c
    "${MPIEXEC_EXECUTABLE} --oversubscribe --allow-run-as-root -np 2 $<TARGET_FILE:tokwatt> bench allreduce -b 1M -e 4M -n 3 -w 1 --expect-busbw 100000 --expect-from 1M; test $? -eq 3")
  set_tests_properties(mpi_bench_expect_fail_np2 PROPERTIES TIMEOUT 60)

  get_property(tw_all_tests DIRECTORY PROPERTY TESTS)
  foreach(t ${tw_all_tests})
    if(t MATCHES "^mpi_")
      set_tests_properties(${t} PROPERTIES LABELS "mpi;nosan" ENVIRONMENT "${TW_MPI_ENV}")
    endif()
  endforeach()
endif()
