# cmake -P script behind `encode_from_train_mlvae` (the inference-only path end to end):
#   1. train_mlvae trains a small MLP ML-VAE for one epoch and writes its checkpoint;
#   2. export_model turns the checkpoint into a model file, and writes 4 test images as text with
#      their content and style means computed by the full library;
#   3. examples/encode is configured against an install prefix with ZLIB, PNG, cereal and OpenMP
#      made unfindable, so only mlvae::core (Eigen) can be used; its binary must not load libz,
#      libpng or an OpenMP runtime;
#   4. encode reads the observations from a file and from stdin and must print the same means
#      (within 2 units of the last printed digit: the examples are built with -march=native);
#   5. encode reports a missing model file clearly.
foreach(var MLVAE_BINARY_DIR ENCODE_SOURCE_DIR WORK_DIR TRAIN_EXE EXPORT_EXE DATA_DIR CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "encode_test.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()
set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})

function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "encode_from_train_mlvae: `${cmd}` failed (${rc}):\n${out}${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

step(${TRAIN_EXE} --epochs 1 --train-limit 512 --hidden 32 --threads 1 --quiet --data ${DATA_DIR}
     --out ${WORK_DIR}/train)
step(${EXPORT_EXE} --checkpoint ${WORK_DIR}/train/checkpoint.bin --out ${WORK_DIR}/model.mlvae --observations 4
     --observations-out ${WORK_DIR}/observations.txt --expected-out ${WORK_DIR}/expected.txt --precision 4
     --data ${DATA_DIR})
message(STATUS "${step_output}")

step(${CMAKE_COMMAND} --install ${MLVAE_BINARY_DIR} --prefix ${prefix} --config ${CONFIG})
step(${CMAKE_COMMAND} -S ${ENCODE_SOURCE_DIR} -B ${build} -G ${GENERATOR}
  -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=${CONFIG}
  -DCMAKE_DISABLE_FIND_PACKAGE_ZLIB=ON -DCMAKE_DISABLE_FIND_PACKAGE_PNG=ON
  -DCMAKE_DISABLE_FIND_PACKAGE_cereal=ON -DCMAKE_DISABLE_FIND_PACKAGE_OpenMP=ON)
step(${CMAKE_COMMAND} --build ${build} --config ${CONFIG})
file(GLOB_RECURSE encode ${build}/encode ${build}/encode.exe)
if(NOT encode)
  message(FATAL_ERROR "encode_from_train_mlvae: the encode binary was not built")
endif()

if(CMAKE_HOST_SYSTEM_NAME STREQUAL "Linux")
  file(GET_RUNTIME_DEPENDENCIES EXECUTABLES ${encode} RESOLVED_DEPENDENCIES_VAR libs
       UNRESOLVED_DEPENDENCIES_VAR unresolved)
  foreach(lib IN LISTS libs unresolved)
    get_filename_component(name ${lib} NAME)
    if(name MATCHES "^lib(z|png|gomp|omp|iomp5)[.0-9]*\\.so")
      message(FATAL_ERROR "encode_from_train_mlvae: encode loads ${name}; mlvae::core must not need it")
    endif()
  endforeach()
  message(STATUS "encode loads: ${libs}")
endif()

step(${encode} ${WORK_DIR}/model.mlvae ${WORK_DIR}/observations.txt --precision 4)
set(from_file "${step_output}")
execute_process(COMMAND ${encode} ${WORK_DIR}/model.mlvae --precision 4 INPUT_FILE ${WORK_DIR}/observations.txt
  RESULT_VARIABLE rc OUTPUT_VARIABLE from_stdin)
if(NOT rc EQUAL 0 OR NOT from_stdin STREQUAL from_file)
  message(FATAL_ERROR "encode_from_train_mlvae: encode on stdin (${rc}) differs from encode on the file:\n"
                      "${from_stdin}\n---\n${from_file}")
endif()
message(STATUS "encode:\n${from_file}")

# Compare with export_model's means number by number: |a - b| <= 2e-4 (printed with 4 decimals).
file(READ ${WORK_DIR}/expected.txt expected)
string(REGEX MATCHALL "-?[0-9]+\\.[0-9]+" want "${expected}")
string(REGEX MATCHALL "-?[0-9]+\\.[0-9]+" got "${from_file}")
list(LENGTH want n_want)
list(LENGTH got n_got)
if(NOT n_want EQUAL n_got OR n_want EQUAL 0)
  message(FATAL_ERROR "encode_from_train_mlvae: encode printed ${n_got} numbers, export_model ${n_want}")
endif()
math(EXPR last "${n_want} - 1")
foreach(i RANGE ${last})
  list(GET want ${i} a)
  list(GET got ${i} b)
  string(REPLACE "." "" a_int "${a}")
  string(REPLACE "." "" b_int "${b}")
  string(REGEX REPLACE "^(-?)0+([0-9])" "\\1\\2" a_int "${a_int}")
  string(REGEX REPLACE "^(-?)0+([0-9])" "\\1\\2" b_int "${b_int}")
  math(EXPR diff "${a_int} - ${b_int}")
  if(diff GREATER 2 OR diff LESS -2)
    message(FATAL_ERROR "encode_from_train_mlvae: number ${i}: encode printed ${b}, export_model ${a}")
  endif()
endforeach()
if(NOT from_file MATCHES "^content( -?[0-9]+\\.[0-9]+)+ style( -?[0-9]+\\.[0-9]+)+\n")
  message(FATAL_ERROR "encode_from_train_mlvae: unexpected output format:\n${from_file}")
endif()

# A missing model file: a clear error (corrupted files: tests/test_model_file.cpp, mode_embedded_corrupt_model_file).
execute_process(COMMAND ${encode} ${WORK_DIR}/model.mlvae.missing ${WORK_DIR}/observations.txt
  RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "cannot open it for reading")
  message(FATAL_ERROR "encode_from_train_mlvae: a missing model file gave (${rc}) ${err}")
endif()
message(STATUS "encode_from_train_mlvae: OK")
