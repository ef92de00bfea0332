# Helpers shared by every module.

# kv_target_defaults(<target>): warnings and the C++ standard for one of our own targets.
function(kv_target_defaults target)
  target_compile_options(${target} PRIVATE ${KV_WARNINGS})
  target_compile_features(${target} PUBLIC cxx_std_20)
endfunction()

# kv_add_test(<name> SOURCES <files...> [LIBS <libs...>] [LABELS <labels...>]
#             [TIMEOUT <seconds>] [ARGS <args...>])
#
# Builds one GoogleTest executable and registers it with CTest as a single test carrying
# the given labels: unit, stress, slow or integration. `make test` runs unit, integration
# and stress; slow suites have their own targets.
function(kv_add_test name)
  cmake_parse_arguments(KT "" "TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  if(NOT KT_SOURCES)
    message(FATAL_ERROR "kv_add_test(${name}): SOURCES is required")
  endif()
  if(NOT KT_LABELS)
    set(KT_LABELS unit)
  endif()
  foreach(label IN LISTS KT_LABELS)
    if(NOT label MATCHES "^(unit|stress|slow|integration)$")
      message(FATAL_ERROR "kv_add_test(${name}): unknown label '${label}'")
    endif()
  endforeach()
  if(NOT KT_TIMEOUT)
    set(KT_TIMEOUT 300)
  endif()
  add_executable(${name} ${KT_SOURCES})
  kv_target_defaults(${name})
  target_link_libraries(${name} PRIVATE ${KT_LIBS} GTest::gtest GTest::gtest_main Threads::Threads)
  add_test(NAME ${name} COMMAND ${name} ${KT_ARGS})
  set_tests_properties(${name} PROPERTIES LABELS "${KT_LABELS}" TIMEOUT ${KT_TIMEOUT})
endfunction()
