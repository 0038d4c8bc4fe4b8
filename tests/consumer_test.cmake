# cmake -P script behind the `consumer_find_package` test:
#   1. cmake --install the mlvae build into WORK_DIR/prefix
#   2. configure + build tests/consumer against it via CMAKE_PREFIX_PATH
#   3. run the consumer binary
foreach(var MLVAE_BINARY_DIR CONSUMER_SOURCE_DIR WORK_DIR CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "consumer_test.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()

set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})

function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "consumer_find_package: `${cmd}` failed (${rc})")
  endif()
endfunction()

step(${CMAKE_COMMAND} --install ${MLVAE_BINARY_DIR} --prefix ${prefix} --config ${CONFIG})
foreach(f include/mlvae/core/types.hpp)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "consumer_find_package: ${f} was not installed")
  endif()
endforeach()
step(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${build} -G ${GENERATOR}
  -DCMAKE_PREFIX_PATH=${prefix}
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
  -DCMAKE_BUILD_TYPE=${CONFIG})
step(${CMAKE_COMMAND} --build ${build} --config ${CONFIG})
if(EXISTS ${build}/${CONFIG}/mlvae_consumer)
  set(exe ${build}/${CONFIG}/mlvae_consumer)
else()
  set(exe ${build}/mlvae_consumer)
endif()
step(${exe})
message(STATUS "consumer_find_package: OK")
