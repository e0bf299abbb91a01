# fmt and Threads are the library's dependencies. A parent project's fmt target
# wins; otherwise the installed package; otherwise a pinned release is fetched.
include(FetchContent)

find_package(Threads REQUIRED)

if(NOT TARGET fmt::fmt)
  find_package(fmt 9 QUIET)
  if(NOT fmt_FOUND)
    message(STATUS "snaptail: fmt not found, fetching fmt 10.2.1")
    FetchContent_Declare(fmt
      GIT_REPOSITORY https://github.com/fmtlib/fmt.git
      GIT_TAG 10.2.1
      GIT_SHALLOW TRUE)
    set(FMT_INSTALL ${SNAPTAIL_INSTALL} CACHE BOOL "" FORCE)
    FetchContent_MakeAvailable(fmt)
  endif()
endif()
