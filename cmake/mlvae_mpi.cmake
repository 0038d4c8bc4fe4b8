# cmake/mlvae_mpi.cmake — the optional MPI data-parallel layer (include/mlvae/mpi/, header-only).
# MLVAE_ENABLE_MPI=ON finds MPI and defines the INTERFACE target mlvae::mpi (mlvae::mlvae +
# MPI::MPI_CXX + MLVAE_WITH_MPI); with the tests, the mpirun tests on localhost (2 and 3 ranks)
# and, when nvcc and NCCL are present, the NCCL worker compiled by nvcc. The core library, its
# install and its package config never need MPI: consumers who want the layer link MPI themselves.
option(MLVAE_ENABLE_MPI "Data-parallel training over MPI: mlvae::mpi, its tests, train_mlvae under mpirun" OFF)
if(NOT MLVAE_ENABLE_MPI)
  return()
endif()

if(NOT TARGET mlvae)
  message(FATAL_ERROR "mlvae: MLVAE_ENABLE_MPI needs the io component (MLVAE_WITH_IO=ON): the MPI layer "
                      "broadcasts and writes training checkpoints")
endif()
find_package(MPI REQUIRED COMPONENTS CXX) # Debian: libopenmpi-dev openmpi-bin
add_library(mlvae_mpi INTERFACE)
add_library(mlvae::mpi ALIAS mlvae_mpi)
target_link_libraries(mlvae_mpi INTERFACE mlvae::mlvae MPI::MPI_CXX)
# The removed MPI-2 C++ bindings are not used; skipping them keeps <mpi.h> warning-free.
target_compile_definitions(mlvae_mpi INTERFACE MLVAE_WITH_MPI OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
message(STATUS "mlvae: MPI layer enabled (${MPI_CXX_LIBRARY_VERSION_STRING})")

# ---- Benchmark (not built by ALL): mpirun -np N bin/mlvae_bench_data_parallel ----------------
find_package(CLI11 CONFIG QUIET)
if(TARGET CLI11::CLI11)
  add_executable(mlvae_bench_data_parallel EXCLUDE_FROM_ALL
    ${PROJECT_SOURCE_DIR}/benchmarks/mpi/bench_data_parallel.cpp)
  target_link_libraries(mlvae_bench_data_parallel PRIVATE mlvae::mpi CLI11::CLI11)
  mlvae_configure_target(mlvae_bench_data_parallel NATIVE)
  set_target_properties(mlvae_bench_data_parallel PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
endif()

# train_mlvae runs under mpirun when linked with the layer (it compiles its MPI code under
# MLVAE_WITH_MPI). Deferred to the end of the top-level directory, when examples/ has been added.
function(mlvae_mpi_link_examples)
  if(NOT TARGET train_mlvae)
    return()
  endif()
  target_link_libraries(train_mlvae PRIVATE mlvae::mpi)
  # train_mlvae under mpirun on the examples' tiny IDX set (fixture mlvae_tiny_data, examples/).
  if(MLVAE_BUILD_TESTS AND TARGET mlvae_mpi_worker)
    add_test(NAME mpi_train_mlvae
      COMMAND bash ${PROJECT_SOURCE_DIR}/tests/mpi/train_mlvae_mpi.sh ${MPIEXEC_EXECUTABLE} ${CMAKE_BINARY_DIR}/bin
              ${CMAKE_BINARY_DIR}/examples/examples_test/data ${PROJECT_BINARY_DIR}/mpi_train_mlvae
              ${mlvae_mpirun_flags})
    set_tests_properties(mpi_train_mlvae PROPERTIES TIMEOUT 300 LABELS mpi ENVIRONMENT OMP_NUM_THREADS=1
      RESOURCE_LOCK mlvae_mpi PROCESSORS 3 FIXTURES_REQUIRED mlvae_tiny_data
      PASS_REGULAR_EXPRESSION "PASSED" FAIL_REGULAR_EXPRESSION "FAILED")
  endif()
endfunction()
cmake_language(DEFER DIRECTORY ${PROJECT_SOURCE_DIR} CALL mlvae_mpi_link_examples)

if(NOT MLVAE_BUILD_TESTS)
  return()
endif()

# ---- Tests: one worker program, one scenario per mpirun (tests/mpi/mpi_worker.cpp) ----------
enable_testing()
add_executable(mlvae_mpi_worker ${PROJECT_SOURCE_DIR}/tests/mpi/mpi_worker.cpp)
target_link_libraries(mlvae_mpi_worker PRIVATE mlvae::mpi)
mlvae_configure_target(mlvae_mpi_worker)

# The MPI headers are left out of the library-wide header check (no MPI there); check them here.
if(MLVAE_BUILD_STATIC_CHECKS)
  set(mlvae_mpi_header_tus)
  foreach(header communicator data_parallel)
    set(tu ${PROJECT_BINARY_DIR}/mpi_header_check/${header}.cpp)
    file(CONFIGURE OUTPUT ${tu} CONTENT
      "#include <mlvae/mpi/${header}.hpp>\n#include <mlvae/mpi/${header}.hpp>\n")
    list(APPEND mlvae_mpi_header_tus ${tu})
  endforeach()
  add_library(mlvae_mpi_header_check OBJECT ${mlvae_mpi_header_tus})
  target_link_libraries(mlvae_mpi_header_check PRIVATE mlvae::mpi)
  mlvae_configure_target(mlvae_mpi_header_check)
endif()

# Open MPI refuses to run as root (CI) and to start more ranks than cores (2-core CI) by default.
set(mlvae_mpirun_flags ${MPIEXEC_PREFLAGS})
execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE mlvae_mpirun_version ERROR_QUIET)
if(mlvae_mpirun_version MATCHES "Open MPI|OpenRTE")
  list(APPEND mlvae_mpirun_flags --allow-run-as-root --oversubscribe)
endif()

# mlvae_mpi_test(<name> <ranks> <args>...): the worker under mpirun; one OpenMP thread per rank.
function(mlvae_mpi_test name ranks)
  add_test(NAME ${name}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${ranks} ${mlvae_mpirun_flags}
            $<TARGET_FILE:mlvae_mpi_worker> ${ARGN} ${MPIEXEC_POSTFLAGS})
  # TIMEOUT only guards against a hang (a test that must end a job); no test asserts on time.
  set_tests_properties(${name} PROPERTIES TIMEOUT 300 LABELS mpi ENVIRONMENT OMP_NUM_THREADS=1
    RESOURCE_LOCK mlvae_mpi PROCESSORS ${ranks})
endfunction()

foreach(ranks 2 3)
  mlvae_mpi_test(mpi_equivalence_np${ranks} ${ranks} equivalence)
  set_tests_properties(mpi_equivalence_np${ranks} PROPERTIES PASS_REGULAR_EXPRESSION "PASSED" FAIL_REGULAR_EXPRESSION "FAILED")
  mlvae_mpi_test(mpi_bit_identical_np${ranks} ${ranks} ordered)
  set_tests_properties(mpi_bit_identical_np${ranks} PROPERTIES PASS_REGULAR_EXPRESSION "PASSED" FAIL_REGULAR_EXPRESSION "FAILED")
endforeach()

# A checkpoint written by 2 ranks resumes on 3 ranks and on one process (no MPI), exactly.
set(mlvae_resume_dir ${PROJECT_BINARY_DIR}/mpi_resume)
mlvae_mpi_test(mpi_resume_write_np2 2 resume-write ${mlvae_resume_dir})
mlvae_mpi_test(mpi_resume_continue_np3 3 resume-continue ${mlvae_resume_dir})
add_test(NAME mpi_resume_check_np1 COMMAND $<TARGET_FILE:mlvae_mpi_worker> resume-check ${mlvae_resume_dir})
set_tests_properties(mpi_resume_write_np2 PROPERTIES FIXTURES_SETUP mlvae_mpi_checkpoint)
set_tests_properties(mpi_resume_continue_np3 PROPERTIES FIXTURES_REQUIRED mlvae_mpi_checkpoint
  FIXTURES_SETUP mlvae_mpi_continued PASS_REGULAR_EXPRESSION "PASSED" FAIL_REGULAR_EXPRESSION "FAILED")
set_tests_properties(mpi_resume_check_np1 PROPERTIES
  FIXTURES_REQUIRED "mlvae_mpi_checkpoint;mlvae_mpi_continued" TIMEOUT 300 LABELS mpi
  PASS_REGULAR_EXPRESSION "PASSED" FAIL_REGULAR_EXPRESSION "FAILED")

# Faults: each must END the job (the PASS expression is the clear error it ends with).
# Kill one rank of a running 3-rank job from outside (SIGKILL): the whole job must end.
add_test(NAME mpi_dead_rank_np3
  COMMAND bash ${PROJECT_SOURCE_DIR}/tests/mpi/kill_rank.sh ${MPIEXEC_EXECUTABLE}
          $<TARGET_FILE:mlvae_mpi_worker> ${PROJECT_BINARY_DIR}/mpi_dead_rank ${mlvae_mpirun_flags})
set_tests_properties(mpi_dead_rank_np3 PROPERTIES TIMEOUT 300 LABELS mpi ENVIRONMENT OMP_NUM_THREADS=1
  RESOURCE_LOCK mlvae_mpi PROCESSORS 3
  PASS_REGULAR_EXPRESSION "PASSED: the job ended" FAIL_REGULAR_EXPRESSION "FAILED")
mlvae_mpi_test(mpi_invalid_data_np2 2 invalid-data)
set_tests_properties(mpi_invalid_data_np2 PROPERTIES
  PASS_REGULAR_EXPRESSION "mlvae rank 1/2: error: Trainer: the training data contain NaN"
  FAIL_REGULAR_EXPRESSION "training finished|PASSED")
mlvae_mpi_test(mpi_different_data_np2 2 different-data)
set_tests_properties(mpi_different_data_np2 PROPERTIES
  PASS_REGULAR_EXPRESSION "mlvae rank [01]/2: error: the training data or keys of rank 1 differ from rank 0's"
  FAIL_REGULAR_EXPRESSION "training finished|PASSED")
mlvae_mpi_test(mpi_stalled_rank_np2 2 stall)
set_tests_properties(mpi_stalled_rank_np2 PROPERTIES
  PASS_REGULAR_EXPRESSION "mlvae rank 0/2: error: MPI_Allgather did not complete within 2 s"
  FAIL_REGULAR_EXPRESSION "training finished|PASSED")

# ---- GPU ranks: the NCCL layer compiled by nvcc when a CUDA toolkit with NCCL exists ---------
include(CheckLanguage)
check_language(CUDA)
find_path(MLVAE_NCCL_INCLUDE_DIR nccl.h HINTS /usr/local/cuda/include)
find_library(MLVAE_NCCL_LIBRARY nccl HINTS /usr/local/cuda/lib64)
if(CMAKE_CUDA_COMPILER AND MLVAE_NCCL_INCLUDE_DIR AND MLVAE_NCCL_LIBRARY)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90) # H100/H200; the worker has no kernels of its own
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  add_executable(mlvae_nccl_worker ${PROJECT_SOURCE_DIR}/tests/mpi/nccl_worker.cu)
  # MPI's include path and libraries rather than MPI::MPI_CXX, whose -pthread nvcc rejects.
  target_include_directories(mlvae_nccl_worker PRIVATE ${PROJECT_SOURCE_DIR}/include)
  target_include_directories(mlvae_nccl_worker SYSTEM PRIVATE ${MPI_CXX_INCLUDE_DIRS} ${MLVAE_NCCL_INCLUDE_DIR})
  target_compile_definitions(mlvae_nccl_worker PRIVATE OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
  target_link_libraries(mlvae_nccl_worker PRIVATE ${MPI_CXX_LIBRARIES} CUDA::cudart ${MLVAE_NCCL_LIBRARY})
  target_compile_features(mlvae_nccl_worker PRIVATE cxx_std_17)
  target_compile_options(mlvae_nccl_worker PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Wall,-Wextra>)
  foreach(ranks 1 2) # exit status 77 (skipped) where there are fewer GPUs than ranks
    add_test(NAME mpi_nccl_np${ranks} COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${ranks}
      ${mlvae_mpirun_flags} $<TARGET_FILE:mlvae_nccl_worker>)
    set_tests_properties(mpi_nccl_np${ranks} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS mpi
      RESOURCE_LOCK mlvae_mpi)
  endforeach()
  message(STATUS "mlvae: NCCL worker compiled by ${CMAKE_CUDA_COMPILER} (runs where a GPU exists)")
else()
  message(STATUS "mlvae: no nvcc or NCCL: the NCCL layer (mlvae/mpi/nccl.hpp) is not compiled")
endif()

