# cmake -DCONSUMER=find_package|fetch_content -DSNAPTAIL_SOURCE_DIR=... -P run_consumer.cmake
# Configures, builds and runs one consumer project in a clean directory.
foreach(var CONSUMER SNAPTAIL_SOURCE_DIR SNAPTAIL_BINARY_DIR CONSUMER_WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer.cmake: ${var} is not set")
  endif()
endforeach()

set(work ${CONSUMER_WORK_DIR}/${CONSUMER})
file(REMOVE_RECURSE ${work})
file(MAKE_DIRECTORY ${work})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    list(JOIN ARGN " " cmd)
    message(FATAL_ERROR "consumer ${CONSUMER}: command failed (${rc}): ${cmd}")
  endif()
endfunction()

set(configure_args -S ${CMAKE_CURRENT_LIST_DIR}/${CONSUMER} -B ${work}/build
    -DCMAKE_BUILD_TYPE=Release)
if(CONSUMER_GENERATOR)
  list(APPEND configure_args -G ${CONSUMER_GENERATOR})
endif()
if(CONSUMER_CXX_COMPILER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CONSUMER_CXX_COMPILER})
endif()

if(CONSUMER STREQUAL "find_package")
  # A stand-alone configure of snaptail installs into a throwaway prefix, as a
  # user's `cmake --install` would; the test tree's own build is left alone.
  run(${CMAKE_COMMAND} -S ${SNAPTAIL_SOURCE_DIR} -B ${work}/snaptail-build
      -DSNAPTAIL_BUILD_TESTS=OFF -DSNAPTAIL_BUILD_EXAMPLES=OFF -DSNAPTAIL_BUILD_BENCHMARKS=OFF
      -DSNAPTAIL_INSTALL=ON)
  run(${CMAKE_COMMAND} --install ${work}/snaptail-build --prefix ${work}/prefix)
  list(APPEND configure_args -DCMAKE_PREFIX_PATH=${work}/prefix)
elseif(CONSUMER STREQUAL "fetch_content")
  list(APPEND configure_args -DSNAPTAIL_SOURCE_DIR=${SNAPTAIL_SOURCE_DIR})
else()
  message(FATAL_ERROR "unknown consumer '${CONSUMER}'")
endif()

run(${CMAKE_COMMAND} ${configure_args})
run(${CMAKE_COMMAND} --build ${work}/build)
run(${work}/build/consumer)
