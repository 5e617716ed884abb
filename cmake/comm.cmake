# Communicators (issue 5): NCCL detection for harness/comm/comm_nccl.c, the bare MPI_Allreduce
# baseline, and the MPI test programs with the mpirun command line and environment the tests
# use (registered in cmake/tests.cmake; ctest labels "mpi" and "nosan": OpenMPI is noisy under
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
    target_include_directories(tw_harness PRIVATE ${TW_NCCL_INCLUDE_DIR})
    target_compile_definitions(tw_harness PRIVATE TW_HAVE_NCCL=1)
    target_link_libraries(tw_harness PUBLIC ${TW_NCCL_LIBRARY})
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

  # The tests of these programs and of `tokwatt bench <collective>` are registered with the
  # other command-level tests in cmake/tests.cmake (checked exit codes, tests/check_cmd.sh).
endif()
