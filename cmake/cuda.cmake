# CUDA backend static checks (issue 6): for every kernel file in kernels/cuda, the ptxas resource
# report (registers, spills) for sm_80 and sm_90a, and the PTX for compute_80 and compute_90a,
# written to ${CMAKE_BINARY_DIR}/cuda-reports at build time (part of ALL) so that
# tests/test_cuda_static.c can read them without a GPU.
if(NOT TW_HAVE_CUDA)
  return()
endif()

set(TW_CUDA_REPORT_DIR ${CMAKE_BINARY_DIR}/cuda-reports)
file(MAKE_DIRECTORY ${TW_CUDA_REPORT_DIR})
file(GLOB TW_CUDA_REPORT_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cu)
file(GLOB TW_CUDA_REPORT_HDR CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cuh
     ${CMAKE_SOURCE_DIR}/kernels/*.h)
set(TW_CUDA_REPORT_FLAGS -I${CMAKE_SOURCE_DIR} -I${CMAKE_SOURCE_DIR}/kernels -DTW_HAVE_CUDA=1
    -DNDEBUG -Werror=all-warnings)
set(TW_CUDA_REPORTS "")
foreach(src ${TW_CUDA_REPORT_SRC})
  file(STRINGS ${src} has_kernel REGEX "__global__")
  if(NOT has_kernel)
    continue() # no kernels: nothing for ptxas to report
  endif()
  get_filename_component(name ${src} NAME_WE)
  foreach(arch 80 90a)
    set(rep ${TW_CUDA_REPORT_DIR}/${name}.sm_${arch}.ptxas.txt)
    set(ptx ${TW_CUDA_REPORT_DIR}/${name}.compute_${arch}.ptx)
    add_custom_command(OUTPUT ${rep}
      COMMAND sh -c "cc=$0 rep=$1 arch=$2 src=$3; shift 4; \"$cc\" -cubin -o \"$rep.cubin\" -gencode=arch=compute_$arch,code=sm_$arch -Xptxas -v \"$@\" \"$src\" 2> \"$rep.tmp\" && mv \"$rep.tmp\" \"$rep\" || { cat \"$rep.tmp\" >&2; exit 1; }"
              ${CMAKE_CUDA_COMPILER} ${rep} ${arch} ${src} ${TW_CUDA_REPORT_FLAGS}
      DEPENDS ${src} ${TW_CUDA_REPORT_HDR}
      COMMENT "ptxas -v report: ${name} sm_${arch}" VERBATIM)
    add_custom_command(OUTPUT ${ptx}
      COMMAND ${CMAKE_CUDA_COMPILER} -ptx -o ${ptx} -arch=compute_${arch} ${TW_CUDA_REPORT_FLAGS}
              ${src}
      DEPENDS ${src} ${TW_CUDA_REPORT_HDR}
      COMMENT "PTX: ${name} compute_${arch}" VERBATIM)
    list(APPEND TW_CUDA_REPORTS ${rep} ${ptx})
  endforeach()
endforeach()
add_custom_target(tw_cuda_reports ALL DEPENDS ${TW_CUDA_REPORTS})

# The CUDA benchmarks as their own executable (bench/bench_cuda.c is also globbed into tokwatt,
# where the lead wires `tokwatt bench cuda`).
add_executable(tokwatt-cuda-bench bench/cuda/tokwatt_cuda_bench.c bench/bench_cuda.c
               bench/tw_cli.c)
target_include_directories(tokwatt-cuda-bench PRIVATE ${CMAKE_SOURCE_DIR}/bench)
target_link_libraries(tokwatt-cuda-bench PRIVATE tw)
set_target_properties(tokwatt-cuda-bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                      ${CMAKE_BINARY_DIR}/bench)
