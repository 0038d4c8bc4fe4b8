# cmake -P script behind `consumer_components`: installs mlvae into WORK_DIR/prefix, then
# configures tests/consumer against it with several find_package(mlvae ...) calls:
#   COMPONENTS io            -> builds and links mlvae::io (zlib used)
#   COMPONENTS core          -> builds with ZLIB, PNG, cereal and OpenMP made unfindable
#   OPTIONAL_COMPONENTS io   -> with ZLIB unfindable: configures, mlvae_io_FOUND is false
#   COMPONENTS io            -> with ZLIB unfindable: fails, naming the component and ZLIB
#   COMPONENTS cuda          -> fails, naming the components this mlvae provides
# (find_package without components is test consumer_find_package.)
foreach(var MLVAE_BINARY_DIR CONSUMER_SOURCE_DIR WORK_DIR CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "components_test.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()
set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${MLVAE_BINARY_DIR} --prefix ${prefix} --config ${CONFIG}
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "installing mlvae failed (${rc})")
endif()
set(no_optional -DCMAKE_DISABLE_FIND_PACKAGE_ZLIB=ON -DCMAKE_DISABLE_FIND_PACKAGE_PNG=ON
                -DCMAKE_DISABLE_FIND_PACKAGE_cereal=ON -DCMAKE_DISABLE_FIND_PACKAGE_OpenMP=ON)

# case NAME EXPECT(ok|fail) OUTPUT_REGEX BUILD(ON|OFF) cmake-args...
function(case name expect regex build)
  set(dir ${WORK_DIR}/${name})
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${dir} -G ${GENERATOR}
      -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=${CONFIG} ${ARGN}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(all "${out}${err}")
  if(expect STREQUAL "ok" AND NOT rc EQUAL 0)
    message(FATAL_ERROR "${name}: configuring failed:\n${all}")
  elseif(expect STREQUAL "fail" AND rc EQUAL 0)
    message(FATAL_ERROR "${name}: configuring succeeded, expected a failure:\n${all}")
  endif()
  if(NOT all MATCHES "${regex}")
    message(FATAL_ERROR "${name}: the output does not match '${regex}':\n${all}")
  endif()
  if(build)
    execute_process(COMMAND ${CMAKE_COMMAND} --build ${dir} --config ${CONFIG} RESULT_VARIABLE rc
      OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${name}: building failed:\n${out}${err}")
    endif()
    file(GLOB_RECURSE exe ${dir}/mlvae_consumer ${dir}/mlvae_consumer.exe)
    execute_process(COMMAND ${exe} RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${name}: the consumer failed (${rc})")
    endif()
  endif()
  message(STATUS "${name}: OK")
endfunction()

case(io ok "core=TRUE io=TRUE" ON -DMLVAE_COMPONENTS=io -DMLVAE_LINK=mlvae::io)
case(core_alone ok "core=TRUE io= mlvae=" ON -DMLVAE_COMPONENTS=core -DMLVAE_LINK=mlvae::core ${no_optional})
case(optional_io ok "core=TRUE io=FALSE" OFF -DMLVAE_COMPONENTS=core -DMLVAE_OPTIONAL_COMPONENTS=io
  -DMLVAE_LINK=mlvae::core -DCMAKE_DISABLE_FIND_PACKAGE_ZLIB=ON)
case(io_without_zlib fail "component 'io' needs ZLIB" OFF
  -DMLVAE_COMPONENTS=io -DMLVAE_LINK=mlvae::io -DCMAKE_DISABLE_FIND_PACKAGE_ZLIB=ON)
case(unknown_component fail "has no component 'cuda'" OFF
  -DMLVAE_COMPONENTS=cuda -DMLVAE_LINK=mlvae::core)
message(STATUS "consumer_components: OK")
