# The CUDA backend (kernels/cuda): its registry row is built when nvcc is found (TW_HAVE_CUDA).
# One of the three places a backend touches (kernels/NAME/, its row in kernels/backend.c, and
# this file): it compiles its folder into tw_kernels and defines TW_HAVE_CUDA there.
# CUDA: enabled when nvcc is found, and then built even without a GPU: native SASS for each of
# TW_CUDA_ARCHS that this nvcc can build, and always compute_80 PTX, which the driver compiles at
# load time on any newer GPU with no SASS of its own here (the mma.sync kernels run everywhere
# from 8.0 on). Plain sm_100 / sm_120 SASS also runs on 10.3 / 12.1 (same major version); the
# sm_90a-only kernels (wgmma) are compiled out of every other target.
set(TW_CUDA_ARCHS "80;90a;100;120" CACHE STRING
  "CUDA SASS targets (sm_XX, XX from this list); compute_80 PTX is always embedded")
set(TW_NVCC_THREADS "" CACHE STRING "nvcc --threads for the per-target passes (empty: 1)")
set(TW_HAVE_CUDA OFF)
if(TW_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_ARCHITECTURES OFF)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(TW_HAVE_CUDA ON)
    execute_process(COMMAND ${CMAKE_CUDA_COMPILER} --list-gpu-code OUTPUT_VARIABLE _tw_codes
      ERROR_QUIET)
    string(REGEX REPLACE "[ \t\r\n]+" ";" _tw_codes "${_tw_codes}")
    set(TW_CUDA_SASS "")
    foreach(a ${TW_CUDA_ARCHS})
      string(REGEX REPLACE "[af]$" "" _tw_base "${a}")
      if("sm_${_tw_base}" IN_LIST _tw_codes)
        list(APPEND TW_CUDA_SASS ${a})
      else()
        list(APPEND TW_MISSING "CUDA sm_${a} SASS (nvcc ${CUDAToolkit_VERSION} cannot build it: such GPUs JIT the compute_80 PTX)")
      endif()
    endforeach()
    set(TW_CUDA_GENCODE "")
    if(NOT "80" IN_LIST TW_CUDA_SASS)
      list(APPEND TW_CUDA_GENCODE -gencode=arch=compute_80,code=compute_80)
    endif()
    foreach(a ${TW_CUDA_SASS})
      if(a STREQUAL "80")
        list(APPEND TW_CUDA_GENCODE "-gencode=arch=compute_80,code=[sm_80,compute_80]")
      else()
        list(APPEND TW_CUDA_GENCODE -gencode=arch=compute_${a},code=sm_${a})
      endif()
    endforeach()
    string(REPLACE ";" "," TW_CUDA_SASS_CSV "${TW_CUDA_SASS}")
    string(REPLACE ";" ",sm_" _tw_sass_names "${TW_CUDA_SASS}")
    list(APPEND TW_FOUND "CUDA ${CUDAToolkit_VERSION} (SASS sm_${_tw_sass_names}; PTX compute_80)")
  else()
    list(APPEND TW_MISSING "CUDA (no nvcc found: the CUDA backend is not built)")
  endif()
else()
  list(APPEND TW_MISSING "CUDA (disabled with -DTW_CUDA=OFF)")
endif()


if(TW_HAVE_CUDA)
  file(GLOB TW_CUDA_SRC CONFIGURE_DEPENDS kernels/cuda/*.cu)
  # An object library folded into tw_kernels, so that CUDA code and the C code it calls (errors,
  # shared helpers) live in one static library with no link-order cycle. Its include folders are
  # kernels/ and its own (private: nothing above kernels/ includes kernels/cuda).
  add_library(tw_cuda OBJECT ${TW_CUDA_SRC})
  target_include_directories(tw_cuda PRIVATE ${CMAKE_SOURCE_DIR}/kernels
                                             ${CMAKE_SOURCE_DIR}/kernels/cuda)
  # The build itself leaves, for tests/test_cuda_static.c, what it embeds: nvcc -keep puts each
  # file's PTX per virtual target and cubin per SASS target in cuda-reports/, and the launcher
  # (cmake/tw_nvcc_report.sh) keeps its ptxas -v report there (<file>.ptxas.txt), so the static
  # checks read the very code that ships, with no second compile.
  set(TW_CUDA_REPORT_DIR ${CMAKE_BINARY_DIR}/cuda-reports)
  file(MAKE_DIRECTORY ${TW_CUDA_REPORT_DIR})
  set(_tw_nvcc_threads "")
  if(TW_NVCC_THREADS)
    set(_tw_nvcc_threads --threads ${TW_NVCC_THREADS})
  endif()
  target_compile_options(tw_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:${TW_CUDA_GENCODE} -Werror=all-warnings
      -Xcompiler=-Wall,-Wextra,-Werror -lineinfo -keep -keep-dir ${TW_CUDA_REPORT_DIR} -Xptxas -v
      ${_tw_nvcc_threads}>)
  set_target_properties(tw_cuda PROPERTIES CUDA_COMPILER_LAUNCHER
    "sh;${CMAKE_SOURCE_DIR}/cmake/tw_nvcc_report.sh;${TW_CUDA_REPORT_DIR}")
  target_compile_definitions(tw_cuda PRIVATE TW_HAVE_CUDA=1)
  target_sources(tw_kernels PRIVATE $<TARGET_OBJECTS:tw_cuda>)
  # tw_kernels was created before CUDA was enabled: no per-target architectures (the gencode
  # flags above choose them)
  set_target_properties(tw_kernels PROPERTIES CUDA_ARCHITECTURES OFF)
  target_link_libraries(tw_kernels PUBLIC CUDA::cudart CUDA::cublas CUDA::cublasLt)
  # the registry row's switch, and the embedded targets (`tokwatt info`, provenance, the static
  # checks)
  target_compile_definitions(tw_kernels PUBLIC TW_HAVE_CUDA=1
    TW_CUDA_SASS_ARCHS="${TW_CUDA_SASS_CSV}" TW_CUDA_PTX_ARCHS="80")
  target_compile_definitions(tw_cuda PRIVATE TW_CUDA_SASS_ARCHS="${TW_CUDA_SASS_CSV}"
    TW_CUDA_PTX_ARCHS="80")
endif()
