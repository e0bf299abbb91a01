// The whole library: #include <snaptail/snaptail.hpp>.
#pragma once

#include <snaptail/batch.hpp>
#include <snaptail/batching_tailer.hpp>
#include <snaptail/checkpoint_store.hpp>
#include <snaptail/error.hpp>
#include <snaptail/line_framer.hpp>
#include <snaptail/line_parser.hpp>
#include <snaptail/position.hpp>
#include <snaptail/swap_buffer.hpp>
#include <snaptail/tail_options.hpp>
#include <snaptail/tailer_stats.hpp>
