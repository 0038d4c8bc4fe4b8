# mlvae CUDA component (included from the top-level CMakeLists.txt).
#
# The device layer's headers (include/mlvae/device/) are installed with the library either way;
# CUDA code exists only in .cu translation units compiled by nvcc, so a CPU-only build and install
# need no CUDA. With MLVAE_ENABLE_CUDA=ON this file adds:
#   mlvae::cuda            INTERFACE target for consumers' .cu files (mlvae::core + cudart + cuBLAS,
#                          --expt-relaxed-constexpr, MLVAE_WITH_CUDA)
#   mlvae_gpu_tests        tests/gpu/test_cuda_step.cu, CTest `gpu_device_step` (label gpu; exits 77,
#                          "skipped", with one line saying why when no GPU is visible)
#   bench_cuda_step        benchmarks/bench_cuda_step.cu (scripts/run_benchmarks.sh, GPU section)
#   mlvae_cuda_all         builds every CUDA target above (scripts/run_tests.sh builds only this)
#   mlvae_device_cuda      examples/device_cuda_*.cu: the --device cuda[:N] backend of the examples

# .cuh headers are nvcc-only and skipped by the header self-containment check (which globs *.hpp).
install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.cuh")

if(NOT MLVAE_ENABLE_CUDA)
  return()
endif()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  # sm_80 code plus compute_80 PTX: runs on Ampere natively and is JIT-compiled for Hopper (the
  # lent H100/H200). One architecture keeps nvcc's compile time (CI budget) down; set
  # -DCMAKE_CUDA_ARCHITECTURES=90 (or native) for a tuned build on one GPU.
  set(CMAKE_CUDA_ARCHITECTURES 80)
endif()
if(NOT DEFINED CMAKE_CUDA_HOST_COMPILER)
  set(CMAKE_CUDA_HOST_COMPILER ${CMAKE_CXX_COMPILER})
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

add_library(mlvae_cuda INTERFACE)
add_library(mlvae::cuda ALIAS mlvae_cuda)
target_link_libraries(mlvae_cuda INTERFACE mlvae_core CUDA::cudart CUDA::cublas)
target_compile_definitions(mlvae_cuda INTERFACE MLVAE_WITH_CUDA)
# Eigen's Tensor module on the GPU needs constexpr functions in device code; Eigen 3.4.0 marks
# defaulted special members __host__ __device__ (warning 20012, harmless, Eigen's own header).
target_compile_options(mlvae_cuda INTERFACE
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -diag-suppress=20012>)

# Warnings as errors for mlvae's own CUDA targets: nvcc's front end and the host compiler.
function(mlvae_configure_cuda_target target)
  target_link_libraries(${target} PRIVATE mlvae::cuda)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>
    $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${MLVAE_WARNINGS_AS_ERRORS}>>:--Werror=all-warnings>)
endfunction()

add_custom_target(mlvae_cuda_all)

if(MLVAE_BUILD_TESTS)
  enable_testing()
  add_executable(mlvae_gpu_tests tests/gpu/test_cuda_step.cu)
  mlvae_configure_cuda_target(mlvae_gpu_tests)
  add_test(NAME gpu_device_step COMMAND mlvae_gpu_tests)
  set_tests_properties(gpu_device_step PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 300)
  add_dependencies(mlvae_cuda_all mlvae_gpu_tests)
endif()

# The examples' --device cuda[:N] backend (examples/device_backend.hpp): a static library of two .cu
# files linked into the examples that use it, which then define MLVAE_EXAMPLES_WITH_CUDA.
if(MLVAE_BUILD_EXAMPLES AND TARGET train_mlvae)
  add_library(mlvae_device_cuda STATIC examples/device_cuda_mlp.cu examples/device_cuda_conv.cu)
  mlvae_configure_cuda_target(mlvae_device_cuda)
  target_link_libraries(mlvae_device_cuda PUBLIC CUDA::cudart CUDA::cublas)
  foreach(example IN ITEMS train_mlvae evaluate_mlvae)
    if(TARGET ${example})
      target_link_libraries(${example} PRIVATE mlvae_device_cuda)
      target_compile_definitions(${example} PRIVATE MLVAE_EXAMPLES_WITH_CUDA)
    endif()
  endforeach()
  add_dependencies(mlvae_cuda_all mlvae_device_cuda)
endif()

if(MLVAE_BUILD_BENCHMARKS)
  add_executable(bench_cuda_step benchmarks/bench_cuda_step.cu)
  mlvae_configure_cuda_target(bench_cuda_step)
  set_target_properties(bench_cuda_step PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin)
  add_dependencies(mlvae_cuda_all bench_cuda_step)
endif()
