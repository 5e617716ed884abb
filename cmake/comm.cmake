# Communicators (issue 5): NCCL detection for harness/comm/comm_nccl.c, the bare MPI_Allreduce
# baseline, and the MPI-launched tests (ctest label "mpi"; also "nosan": OpenMPI is noisy under
# ASan).

# ---- NCCL: nccl.h and libnccl from ONE install, never the header of one and the library of
# another. Candidates, first complete one wins: -DTW_NCCL_ROOT, $NCCL_HOME, Python's nvidia-nccl
# wheel (nvidia/nccl/{include,lib}; it ships only libnccl.so.2, hence the versioned name), the
# CUDA toolkit, /usr. -DTW_NCCL_INCLUDE_DIR=... -DTW_NCCL_LIBRARY=... together override. ----
set(TW_NCCL_ROOT "" CACHE PATH "Folder holding include/nccl.h and lib/libnccl.so*")
set(TW_HAVE_NCCL OFF)
if(TW_HAVE_CUDA)
  if(NOT (TW_NCCL_INCLUDE_DIR AND TW_NCCL_LIBRARY))
    set(_tw_cands "")
    foreach(r ${TW_NCCL_ROOT} $ENV{NCCL_HOME})
      list(APPEND _tw_cands "${r}/include|${r}/lib,${r}/lib64")
    endforeach()
    execute_process(COMMAND python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0])"
      OUTPUT_VARIABLE _tw_wheel OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET
      RESULT_VARIABLE _tw_rc)
    if(_tw_rc EQUAL 0 AND IS_DIRECTORY "${_tw_wheel}")
      list(APPEND _tw_cands "${_tw_wheel}/include|${_tw_wheel}/lib")
    endif()
    string(REPLACE ";" "," _tw_tk_inc "${CUDAToolkit_INCLUDE_DIRS}")
    list(APPEND _tw_cands "${_tw_tk_inc}|${CUDAToolkit_LIBRARY_DIR}"
      "/usr/include|/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE},/usr/lib,/usr/lib64")
    foreach(c ${_tw_cands})
      string(REPLACE "|" ";" _tw_pair "${c}")
      list(GET _tw_pair 0 _tw_i)
      list(GET _tw_pair 1 _tw_l)
      string(REPLACE "," ";" _tw_i "${_tw_i}")
      string(REPLACE "," ";" _tw_l "${_tw_l}")
      unset(_TW_NCCL_INC CACHE)
      unset(_TW_NCCL_LIB CACHE)
      find_path(_TW_NCCL_INC nccl.h PATHS ${_tw_i} NO_DEFAULT_PATH)
      find_library(_TW_NCCL_LIB NAMES nccl libnccl.so.2 NAMES_PER_DIR PATHS ${_tw_l}
        NO_DEFAULT_PATH)
      if(_TW_NCCL_INC AND _TW_NCCL_LIB)
        set(TW_NCCL_INCLUDE_DIR ${_TW_NCCL_INC} CACHE PATH "nccl.h folder (same install as the library)")
        set(TW_NCCL_LIBRARY ${_TW_NCCL_LIB} CACHE FILEPATH "libnccl (same install as nccl.h)")
        break()
      endif()
    endforeach()
    unset(_TW_NCCL_INC CACHE)
    unset(_TW_NCCL_LIB CACHE)
  endif()
  if(TW_NCCL_INCLUDE_DIR AND TW_NCCL_LIBRARY)
    set(TW_HAVE_NCCL ON)
    file(STRINGS ${TW_NCCL_INCLUDE_DIR}/nccl.h _tw_v REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
    string(REGEX REPLACE "[^0-9;]" "" _tw_v "${_tw_v}")
    string(REPLACE ";" "." _tw_v "${_tw_v}")
    target_include_directories(tw PRIVATE ${TW_NCCL_INCLUDE_DIR})
    target_compile_definitions(tw PRIVATE TW_HAVE_NCCL=1)
    target_link_libraries(tw PUBLIC ${TW_NCCL_LIBRARY})
    list(APPEND TW_FOUND "NCCL ${_tw_v} (${TW_NCCL_LIBRARY} with ${TW_NCCL_INCLUDE_DIR}/nccl.h)")
  else()
    list(APPEND TW_MISSING "NCCL (no install with both nccl.h and libnccl: set NCCL_HOME or -DTW_NCCL_ROOT)")
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
