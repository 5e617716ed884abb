# Power tests: a fake NVML shared library (tests/fake_nvml.c), loaded by harness/power through
# $TW_NVML_LIB, so the NVML paths are tested on machines without a GPU or driver.
if(TW_TESTS)
  add_library(tw_fake_nvml SHARED tests/fake_nvml.c)
  set_target_properties(tw_fake_nvml PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests
                                                C_VISIBILITY_PRESET default)
  # test_power is created after this file is included: attach the library path once it exists.
  function(tw_power_attach_fake_nvml)
    if(TARGET test_power)
      add_dependencies(test_power tw_fake_nvml)
      set_property(TEST test_power APPEND PROPERTY ENVIRONMENT
                   "TW_NVML_LIB=$<TARGET_FILE:tw_fake_nvml>")
    endif()
  endfunction()
  cmake_language(DEFER CALL tw_power_attach_fake_nvml)
endif()
