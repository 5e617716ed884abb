# CUDA backend static checks (issues 6, 14): the build leaves, in ${CMAKE_BINARY_DIR}/cuda-reports,
# what it embeds (CMakeLists.txt: nvcc -keep and cmake/tw_nvcc_report.sh): for every file of
# kernels/cuda, <file>.ptxas.txt (the ptxas -v resource report of every target), <file>.compute_XX.ptx
# and the cubins; tests/test_cuda_static.c reads those and the fatbin in bench/tokwatt without a GPU.
if(NOT TW_HAVE_CUDA)
  return()
endif()

# The CUDA benchmarks as their own executable (bench/bench_cuda.c is also globbed into tokwatt,
# where the lead wires `tokwatt bench cuda`).
add_executable(tokwatt-cuda-bench bench/cuda/tokwatt_cuda_bench.c bench/bench_cuda.c
               bench/tw_cli.c)
target_include_directories(tokwatt-cuda-bench PRIVATE ${CMAKE_SOURCE_DIR}/bench)
target_link_libraries(tokwatt-cuda-bench PRIVATE tw)
set_target_properties(tokwatt-cuda-bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                      ${CMAKE_BINARY_DIR}/bench)
