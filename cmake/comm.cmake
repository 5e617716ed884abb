# Communicators (issue 5): NCCL detection for harness/comm/comm_nccl.c, the bare MPI_Allreduce
# baseline, and the MPI test programs with the mpirun command line and environment the tests
# use (registered in cmake/tests.cmake; ctest labels "mpi" and "nosan": OpenMPI is noisy under
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

  # The tests of these programs and of `tokwatt bench <collective>` are registered with the
  # other command-level tests in cmake/tests.cmake (checked exit codes, tests/check_cmd.sh).
endif()
