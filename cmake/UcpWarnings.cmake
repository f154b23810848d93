# Our own targets link this; consumers never inherit it.
add_library(ucp_warnings INTERFACE)
target_compile_options(ucp_warnings INTERFACE -Wall -Wextra -Wshadow -Wnon-virtual-dtor)
