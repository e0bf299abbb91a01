// snaptail/sinks/postgres_options.hpp: what a PostgreSQL sink writes where, its errors and its
// counters (see snaptail/sinks/postgres.hpp).
#pragma once

#include <snaptail/error.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace snaptail::postgres {

/// A failure of the server, the connection or libpq; the message says which statement failed
/// and what the server or libpq said. The tailer retries the batch when a Sink throws it.
class PostgresError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// How rows reach the table. COPY is the faster (see the README for figures); INSERT sends
/// prepared multi-row INSERT statements.
enum class WriteMethod { copy, insert };

/// What a Sink writes where. Plain data; checked by the Sink's constructor.
struct Options {
    /// A libpq connection string ("host=... dbname=..." or a postgresql:// URI). Timeouts and
    /// keepalives are libpq's (connect_timeout, keepalives_idle, tcp_user_timeout).
    std::string conninfo;
    /// The table the rows go to, optionally schema-qualified ("logs.lines"). Each part is
    /// quoted (case is kept); a name that contains a double quote is used as written.
    std::string table;
    /// The table's columns the mapping fills, in the order it adds values.
    std::vector<std::string> columns;
    /// Names this tailer's rows in the positions table: one row per (stream, file).
    std::string stream;
    /// The positions table; created (with a sequence `<name>_written`) when missing.
    std::string positions_table{"snaptail_positions"};
    /// SQL run after each connect, before the first batch: e.g. CREATE TABLE IF NOT EXISTS.
    std::string setup_sql;
    /// COPY (the default, the faster) or multi-row INSERT.
    WriteMethod method{WriteMethod::copy};
    /// With WriteMethod::insert: rows per INSERT statement (at most 65535 values each).
    std::size_t insert_rows{1000};
    /// Receives each record the mapping could not turn into a row (kind ErrorKind::parse, with
    /// the line number and offset), after its batch is committed; default: print_error.
    ErrorHandler on_error;
};

/// A Sink's counters. All of them count committed work, except failures and connects.
struct SinkStats {
    std::uint64_t batches{0};          ///< Batches committed.
    std::uint64_t rows{0};             ///< Rows committed.
    std::uint64_t skipped_batches{0};  ///< Batches found already stored (a retry after a
                                       ///< commit whose answer was lost, or a re-delivery).
    std::uint64_t skipped_rows{0};     ///< Records found already stored, in those batches or
                                       ///< at the start of a batch that overlaps the position.
    std::uint64_t mapping_errors{0};   ///< Records the mapping threw for (reported, not written).
    std::uint64_t failures{0};         ///< Batch attempts that threw (the tailer retries them).
    std::uint64_t connects{0};         ///< Connections made, the first included.
};

}  // namespace snaptail::postgres
