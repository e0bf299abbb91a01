// snaptail/sinks/postgres.hpp: a sink that writes each batch into a PostgreSQL table and stores
// the batch's end position in the same transaction, for exactly-once delivery.
//
// Needs libpq (Debian: libpq-dev). With CMake, link `snaptail::postgres`, which snaptail creates
// when it finds libpq. Not included by <snaptail/snaptail.hpp>.
//
//     auto options = snaptail::postgres::raw_lines_options("host=db dbname=logs", "lines", "web1");
//     snaptail::TailOptions tail;
//     tail.path = "/var/log/app.log";
//     if (auto p = snaptail::postgres::load_position(options.conninfo, options.stream)) {
//         tail.start = snaptail::StartAt::position(*p);  // resume where the table ends
//     }
//     snaptail::postgres::Sink<std::string_view> sink(options,
//     snaptail::postgres::RawLineMapping{}); snaptail::BatchingTailer tailer(tail,
//     snaptail::RawLineParser{}, sink);
//
// Exactly once: each batch is one transaction that locks the stream's position row for the
// batch's file, writes the rows (COPY, or multi-row INSERT), and upserts the row to the batch's
// end_position(). A crash or a lost connection before COMMIT writes nothing (the tailer retries
// the batch, or resumes from the stored position); a lost connection after COMMIT leaves the
// position at the batch's end, and the retry finds it there and writes nothing again.
#pragma once

#include <snaptail/batch.hpp>
#include <snaptail/error.hpp>
#include <snaptail/position.hpp>
#include <snaptail/sinks/detail/postgres_session.hpp>
#include <snaptail/sinks/detail/postgres_text.hpp>
#include <snaptail/sinks/postgres_options.hpp>
#include <snaptail/sinks/record_info.hpp>

#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace snaptail::postgres {

/// One row of the table, filled by a mapping with one add() per column, in Options::columns
/// order. Each add either takes the value or throws (the record is then reported and skipped).
/// Not thread-safe; valid only during the mapping call.
class Row {
  public:
    /// A text value. Throws std::invalid_argument for a NUL byte or invalid UTF-8, which
    /// PostgreSQL text cannot hold (add_bytes into a bytea column can).
    Row& add(std::string_view text) {
        rows_.add_text(text);
        return *this;
    }
    Row& add(const char* text) { return add(std::string_view(text)); }
    Row& add(const std::string& text) { return add(std::string_view(text)); }
    /// An integer value (for smallint, integer, bigint or numeric columns).
    template <std::integral Int>
    requires(!std::same_as<Int, bool> && !std::same_as<Int, char>) Row& add(Int value) {
        char digits[24];
        const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
        rows_.add_raw(std::string_view(digits, static_cast<std::size_t>(end - digits)));
        return *this;
    }
    /// A floating-point value, shortest round-trip form; infinities and NaN as PostgreSQL
    /// spells them.
    template <std::floating_point Float>
    Row& add(Float value) {
        if (value != value) {
            rows_.add_raw("NaN");
        } else if (value == std::numeric_limits<Float>::infinity()) {
            rows_.add_raw("Infinity");
        } else if (value == -std::numeric_limits<Float>::infinity()) {
            rows_.add_raw("-Infinity");
        } else {
            char digits[32];
            const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
            rows_.add_raw(std::string_view(digits, static_cast<std::size_t>(end - digits)));
        }
        return *this;
    }
    /// A boolean value.
    Row& add(bool value) {
        rows_.add_raw(value ? "t" : "f");
        return *this;
    }
    /// Any bytes, for a bytea column.
    Row& add_bytes(std::string_view bytes) {
        rows_.add_bytes(bytes);
        return *this;
    }
    /// SQL NULL.
    Row& add_null() {
        rows_.add_null();
        return *this;
    }
    /// Values added so far.
    std::size_t size() const noexcept { return rows_.values_in_row(); }

    /// A row writing into `rows` (the Sink makes one per record). Never allocates.
    explicit Row(detail::RowBuilder& rows) noexcept : rows_(rows) {}
    Row(const Row&) = delete;
    Row& operator=(const Row&) = delete;

  private:
    detail::RowBuilder& rows_;
};

/// A sink for BatchingTailer<Parser> whose records are R: writes each batch into
/// Options::table and stores its end position in Options::positions_table in one transaction
/// (see the top of this header). Copies share one connection and one set of counters, so the
/// tailer may take a copy while you keep one for stats(). operator() blocks on the server and
/// is not thread-safe (the tailer calls it from its thread only); stats() is thread-safe.
template <class R>
class Sink {
  public:
    /// Fills one row from a record: `row.add(...)` once per column. May throw for a record it
    /// cannot map: that record is reported with its line number and skipped.
    using Mapping = std::function<void(const R& record, const RecordInfo& at, Row& row)>;

    /// Checks the options (throws std::invalid_argument naming the bad one). Does not connect:
    /// the first batch does. Allocates.
    Sink(Options options, Mapping mapping)
        : state_(std::make_shared<State>(std::move(options), std::move(mapping))) {}

    /// Writes the batch and its end position in one transaction, or nothing (then throws
    /// PostgresError, or what the connection setup threw, and the tailer retries). Blocks.
    void operator()(Batch<R>& batch) { state_->write(batch); }

    /// The counters. Thread-safe; never blocks.
    SinkStats stats() const noexcept {
        const auto& c = state_->counters;
        return SinkStats{c.batches.load(),      c.rows.load(),           c.skipped_batches.load(),
                         c.skipped_rows.load(), c.mapping_errors.load(), c.failures.load(),
                         c.connects.load()};
    }

  private:
    struct Counters {
        std::atomic<std::uint64_t> batches{0}, rows{0}, skipped_batches{0}, skipped_rows{0},
            mapping_errors{0}, failures{0}, connects{0};
    };

    struct State {
        State(Options o, Mapping m)
            : options(std::move(o)), mapping(std::move(m)), session(options) {
            auto reject = [](std::string_view name, std::string_view why) {
                throw std::invalid_argument(
                    fmt::format("snaptail::postgres::Options::{}: {}", name, why));
            };
            if (options.table.empty()) {
                reject("table", "a table to write into is required");
            }
            if (options.columns.empty()) {
                reject("columns", "at least one column is required");
            }
            if (options.stream.empty()) {
                reject("stream", "a stream name is required (it keys the stored positions)");
            }
            detail::check_positions_table(options.positions_table);
            if (options.insert_rows == 0) {
                reject("insert_rows", "must be at least 1");
            }
            if (!mapping) {
                reject("mapping", "a mapping is required");
            }
            if (!options.on_error) {
                options.on_error = print_error;
            }
        }

        void write(Batch<R>& batch) {
            errors.clear();
            mapped = false;
            try {
                write_once(batch);
            } catch (...) {
                ++counters.failures;
                session.recover();
                // If this attempt's COMMIT went through unanswered, the retry finds the batch
                // stored: these are then its errors to report.
                const Position& end = batch.end_position();
                if (mapped) {
                    pending_errors = std::move(errors);
                    pending_end = end;
                } else if (pending_end != end) {
                    pending_errors.clear();
                    pending_end.reset();
                }
                errors.clear();
                throw;
            }
        }

        void write_once(Batch<R>& batch) {
            session.connection(counters.connects);
            const Position& end = batch.end_position();
            session.begin();
            const std::optional<Position> stored = session.lock_position(end.file);
            // The same file when the fingerprints agree (a file on a reused inode has other
            // first bytes); then what lies before the stored offset is already in the table.
            const bool same_file = stored && stored->fingerprint == end.fingerprint;
            if (same_file && stored->offset >= end.offset) {
                session.rollback();
                ++counters.skipped_batches;
                counters.skipped_rows += batch.size();
                if (pending_end && *pending_end == end) {
                    report(pending_errors);
                }
                pending_end.reset();
                return;
            }
            std::size_t first = 0;
            if (same_file) {
                while (first < batch.size() && batch.line_of(first).offset < stored->offset) {
                    ++first;
                }
            }
            rows.reset(options.method, options.columns.size());
            const bool copy = options.method == WriteMethod::copy;
            if (copy && first < batch.size()) {
                session.copy_begin();
            }
            auto records = batch.records();
            mapped = true;
            for (std::size_t i = first; i < records.size(); ++i) {
                const RecordInfo at = record_info(batch, i);
                rows.begin_row();
                try {
                    Row row(rows);
                    mapping(records[i], at, row);
                    rows.end_row();
                } catch (const std::exception& e) {
                    rows.abort_row();
                    note_error(at, e.what());
                } catch (...) {
                    rows.abort_row();
                    note_error(at, "the mapping threw a non-standard exception");
                }
                if (copy && rows.copy_data().size() >= copy_chunk) {
                    session.copy_send(rows.copy_data());
                }
            }
            if (copy && first < batch.size()) {
                session.copy_send(rows.copy_data());
                session.copy_end();
            } else if (!copy && rows.rows() != 0) {
                session.insert(rows);
            }
            session.store_position(end, batch.path());
            session.commit();
            pending_end.reset();
            ++counters.batches;
            counters.rows += rows.rows();
            counters.skipped_rows += first;
            report(errors);
        }

        void note_error(const RecordInfo& at, std::string_view what) {
            errors.push_back(Error{ErrorKind::parse,
                                   fmt::format("postgres sink: record not written: {}", what),
                                   std::string(at.path), at.offset, at.line});
        }

        void report(std::vector<Error>& list) {
            for (const Error& e : list) {
                ++counters.mapping_errors;
                try {
                    options.on_error(e);
                } catch (...) {  // a failing handler must not fail a committed batch
                }
            }
            list.clear();
        }

        static constexpr std::size_t copy_chunk = std::size_t{1} << 20;

        Options options;
        Mapping mapping;
        detail::Session session;
        detail::RowBuilder rows;
        Counters counters;
        std::vector<Error> errors;
        std::vector<Error> pending_errors;
        std::optional<Position> pending_end;
        bool mapped{false};  // this attempt mapped the records (errors holds its errors)
    };

    std::shared_ptr<State> state_;
};

/// The columns RawLineMapping fills: the file's device and inode, the line number, the line's
/// byte offset and its text.
inline std::vector<std::string> raw_line_columns() {
    return {"file_device", "file_inode", "line", "byte_offset", "text"};
}

/// CREATE TABLE IF NOT EXISTS for raw lines: the raw_line_columns() as bigint and text, and
/// an `id bigserial` primary key (the order rows were committed in).
inline std::string raw_lines_table_sql(std::string_view table) {
    return fmt::format(
        "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, file_device bigint NOT NULL, "
        "file_inode bigint NOT NULL, line bigint NOT NULL, byte_offset bigint NOT NULL, "
        "text text NOT NULL)",
        detail::quote_identifier(table));
}

/// Maps a raw line (RawLineParser's std::string_view) to raw_line_columns(). A line that is
/// not UTF-8, or holds a NUL byte, throws: it is reported with its line number and skipped.
struct RawLineMapping {
    void operator()(std::string_view line, const RecordInfo& at, Row& row) const {
        row.add(std::bit_cast<std::int64_t>(at.file.device))
            .add(std::bit_cast<std::int64_t>(at.file.inode))
            .add(at.line)
            .add(at.offset)
            .add(line);
    }
};

/// Options for RawLineMapping into `table` (created if missing) under `stream`.
inline Options raw_lines_options(std::string conninfo, std::string table, std::string stream) {
    Options o;
    o.conninfo = std::move(conninfo);
    o.setup_sql = raw_lines_table_sql(table);
    o.table = std::move(table);
    o.columns = raw_line_columns();
    o.stream = std::move(stream);
    return o;
}

/// The position most recently stored for `stream` (for StartAt::position), or nullopt if none
/// is (or the positions table does not exist). Blocks on the server; throws PostgresError.
inline std::optional<Position> load_position(
    PGconn* conn, std::string_view stream,
    std::string_view positions_table = "snaptail_positions") {
    auto all = detail::load(conn, stream, positions_table, true);
    if (all.empty()) {
        return std::nullopt;
    }
    return all.front();
}

/// The same on a connection of its own to `conninfo`, closed before returning.
inline std::optional<Position> load_position(
    const std::string& conninfo, std::string_view stream,
    std::string_view positions_table = "snaptail_positions") {
    const detail::Connection conn = detail::connect(conninfo);
    return load_position(conn.get(), stream, positions_table);
}

/// Every position stored for `stream`, one per file, oldest write first. Blocks; throws
/// PostgresError.
inline std::vector<Position> load_positions(
    PGconn* conn, std::string_view stream,
    std::string_view positions_table = "snaptail_positions") {
    return detail::load(conn, stream, positions_table, false);
}

/// The same on a connection of its own to `conninfo`.
inline std::vector<Position> load_positions(
    const std::string& conninfo, std::string_view stream,
    std::string_view positions_table = "snaptail_positions") {
    const detail::Connection conn = detail::connect(conninfo);
    return load_positions(conn.get(), stream, positions_table);
}

}  // namespace snaptail::postgres
