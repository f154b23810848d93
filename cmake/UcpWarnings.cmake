# Our own targets link this; consumers never inherit it.
add_library(ucp_warnings INTERFACE)
# C++ only: nvcc does not take these flags directly; CUDA sources get theirs in UcpCuda.cmake.
target_compile_options(ucp_warnings INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wshadow -Wnon-virtual-dtor>)
