# flux_pytest_suite(<prefix> FILES <name>... [COSTS <name>=<seconds>...]
#                   [ENVIRONMENT <VAR=value>...])
#
# Registers one CTest test <prefix>_<name> per test_<name>.py of the calling
# folder, run by /usr/bin/python3 -m pytest (label "integration"), so that
# `ctest -j` runs the files in parallel. Shared by tests/integration,
# tests/integration_cp and tests/integration_cli.
#
# COSTS gives a file's usual run time in seconds: CTest starts the costliest
# tests first when it has no measurements of its own yet (a fresh clone has no
# Testing/Temporary/CTestCostData.txt), so a long file does not start last
# and become the tail of the whole run. Files without a cost are taken as
# quick.
set(FLUX_PYTEST_PYTHON /usr/bin/python3)

function(flux_pytest_suite prefix)
  cmake_parse_arguments(ARG "" "" "FILES;COSTS;ENVIRONMENT" ${ARGN})
  foreach(name IN LISTS ARG_FILES)
    set(test ${prefix}_${name})
    add_test(NAME ${test}
             COMMAND ${FLUX_PYTEST_PYTHON} -m pytest -q -p no:cacheprovider
                     ${CMAKE_CURRENT_SOURCE_DIR}/test_${name}.py)
    set(cost 1)
    foreach(entry IN LISTS ARG_COSTS)
      if(entry MATCHES "^${name}=([0-9]+)$")
        set(cost ${CMAKE_MATCH_1})
      endif()
    endforeach()
    set_tests_properties(${test} PROPERTIES
      LABELS integration
      TIMEOUT 600
      COST ${cost}
      ENVIRONMENT "${ARG_ENVIRONMENT};FLUX_SOURCE_DIR=${CMAKE_SOURCE_DIR};FLUX_BUILD_DIR=${CMAKE_BINARY_DIR};PYTHONDONTWRITEBYTECODE=1")
  endforeach()
endfunction()
