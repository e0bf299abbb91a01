// Skipping a test whose outside program (a server, promtool) is missing, so that ctest reports it
// as skipped rather than passed.
#pragma once

#include "find_program.hpp"
#include "snaptail_catch.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>

/// Skips the current test case: says why on stderr, then, under ctest (which sets
/// SNAPTAIL_SKIP_RETURN_CODE and marks that exit status as skipped), exits with that status;
/// run by hand, it warns and returns from the test case.
#define SNAPTAIL_SKIP(reason)                                                \
    do {                                                                     \
        const std::string snaptail_skip_reason = (reason);                   \
        std::fprintf(stderr, "SKIPPED: %s\n", snaptail_skip_reason.c_str()); \
        if (const char* code = std::getenv("SNAPTAIL_SKIP_RETURN_CODE")) {   \
            std::fflush(nullptr);                                            \
            std::_Exit(std::atoi(code));                                     \
        }                                                                    \
        WARN("SKIPPED: " << snaptail_skip_reason);                           \
        return;                                                              \
    } while (false)
