# GEMM part: the OpenBLAS baseline runner, a separate executable that `tokwatt bench gemm
# --baseline` spawns (so that OpenBLAS's own threads and environment never touch tokwatt).
# Built only when OpenBLAS and cblas.h were found; it sits beside tokwatt in bench/.
if(OPENBLAS_LIB AND OPENBLAS_INC)
  add_executable(baseline_openblas ${CMAKE_SOURCE_DIR}/bench/baseline_openblas.c)
  target_include_directories(baseline_openblas PRIVATE ${OPENBLAS_INC})
  target_link_libraries(baseline_openblas PRIVATE ${OPENBLAS_LIB} m)
  set_target_properties(baseline_openblas PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                                     ${CMAKE_BINARY_DIR}/bench)
  # tokwatt without its baseline would silently lose a column: build them together.
  add_dependencies(tokwatt baseline_openblas)
endif()
