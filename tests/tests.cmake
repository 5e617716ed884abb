# Tests registered from tests/: the Criterion suites tests/test_*.c (one executable each, with
# the helpers tests/tw_*.c) and the layer probes. The command-level tests and their helper
# (tw_cmd_test) are in cmake/tests.cmake, included before this file.
if(NOT TW_TESTS)
  return()
endif()
# Found by name under the usual prefixes and CMAKE_PREFIX_PATH; where the packages sit elsewhere
# (scripts/gpu-check unpacks carried .debs into the repo), give -DCRITERION_LIB=... and
# -DCRITERION_INCLUDE_DIR=... (the folder holding criterion/criterion.h).
find_library(CRITERION_LIB criterion REQUIRED)
find_path(CRITERION_INCLUDE_DIR criterion/criterion.h REQUIRED)
enable_testing()
file(GLOB TW_TEST_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/test_*.c)
file(GLOB TW_TEST_HELPERS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/tw_*.c)
foreach(src ${TW_TEST_SRC})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src} ${TW_TEST_HELPERS})
  target_link_libraries(${name} PRIVATE tw ${CRITERION_LIB})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests ${CRITERION_INCLUDE_DIR})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name} --jobs 2)
  set_tests_properties(${name} PROPERTIES ENVIRONMENT
    "TW_SOURCE_DIR=${CMAKE_SOURCE_DIR};TW_BUILD_DIR=${CMAKE_BINARY_DIR};TW_TOKWATT=${CMAKE_BINARY_DIR}/bench/tokwatt")
  if(name MATCHES "^test_gpu_")
    set_tests_properties(${name} PROPERTIES LABELS "gpu")
  else()
    set_tests_properties(${name} PROPERTIES LABELS "cpu")
  endif()
endforeach()

# The layers the build enforces (CMakeLists.txt): each probe in tests/layers includes a header of
# a layer above (or a backend's private one) and is compiled with the exact flags of a file of
# the layer below (compile_commands.json); each must fail for want of that header, and the
# layer's own file must compile with the same flags (so a probe fails for the right reason).
# Through tw_cmd_test (cmake/tests.cmake): the exit code is checked as well as the output.
tw_cmd_test(layers_include_upward_fails OUT "tw-test: PASS" LABELS cpu
  COMMAND ${TW_PYTHON3} ${CMAKE_SOURCE_DIR}/tests/layers/check_layers.py ${CMAKE_BINARY_DIR}
          ${CMAKE_SOURCE_DIR})
