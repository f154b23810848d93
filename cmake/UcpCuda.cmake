# The CUDA kernels (src/exec/cuda: cast kernels + device staging) as target ucp_cuda, which
# defines UCP_HAVE_CUDA=1. Included from the NCCL block of CMakeLists.txt once CUDAToolkit is
# found; needs nvcc on top of the toolkit's libraries. Without a usable nvcc it only says so:
# a machine without CUDA must still configure.
include(CheckLanguage)
if(NOT CMAKE_CUDA_COMPILER AND CUDAToolkit_NVCC_EXECUTABLE AND EXISTS "${CUDAToolkit_NVCC_EXECUTABLE}")
  set(CMAKE_CUDA_COMPILER "${CUDAToolkit_NVCC_EXECUTABLE}" CACHE FILEPATH "CUDA compiler")
endif()
# nvcc 13 dropped everything before Turing: CMake's default (52) would fail the compiler check.
# Ampere and Hopper cover the GPUs this tool targets; override with -DCMAKE_CUDA_ARCHITECTURES=...
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80 90)
endif()
# The same host compiler as the C++ code, so both sides agree on the standard library ABI.
if(NOT DEFINED CMAKE_CUDA_HOST_COMPILER)
  set(CMAKE_CUDA_HOST_COMPILER "${CMAKE_CXX_COMPILER}")
endif()
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(STATUS "ucp-reshard: no working nvcc: CUDA kernels (ucp_cuda) not built")
  return()
endif()
enable_language(CUDA)
# C++20 like the rest (the targets inherit CXX_STANDARD 20). CMake 3.25 does not know nvcc's flag
# for it yet; nvcc 12+ has it.
if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()

file(GLOB UCP_CUDA_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/exec/cuda/*.cu ${PROJECT_SOURCE_DIR}/src/exec/cuda/*.cc)
add_library(ucp_cuda STATIC ${UCP_CUDA_SOURCES})
# One CUDA runtime per process: the shared one, as ucp_nccl links (a static copy beside it would
# be a second runtime with its own device state).
set_target_properties(ucp_cuda PROPERTIES CUDA_RUNTIME_LIBRARY Shared)
target_link_libraries(ucp_cuda PUBLIC ucp_base CUDA::cudart PRIVATE ucp_warnings)
target_compile_options(ucp_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wshadow>)
target_compile_definitions(ucp_cuda PUBLIC UCP_HAVE_CUDA=1)
set(UCP_HAVE_CUDA ON)
message(STATUS "ucp-reshard: nvcc ${CMAKE_CUDA_COMPILER_VERSION} (architectures ${CMAKE_CUDA_ARCHITECTURES}): building the CUDA kernels")
