option(SNAPTAIL_WARNINGS_AS_ERRORS "Treat warnings in snaptail's own targets as errors" OFF)

# Warnings for snaptail's own targets only; never propagated to consumers.
add_library(snaptail_warnings INTERFACE)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(snaptail_warnings INTERFACE
    -Wall -Wextra -Wpedantic -Wconversion -Wshadow)
  if(SNAPTAIL_WARNINGS_AS_ERRORS)
    target_compile_options(snaptail_warnings INTERFACE -Werror)
  endif()
endif()
