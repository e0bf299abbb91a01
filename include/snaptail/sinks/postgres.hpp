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

namespace detail {

struct ConnectionDeleter {
    void operator()(PGconn* conn) const noexcept { PQfinish(conn); }
};
struct ResultDeleter {
    void operator()(PGresult* result) const noexcept { PQclear(result); }
};
using Connection = std::unique_ptr<PGconn, ConnectionDeleter>;
using Result = std::unique_ptr<PGresult, ResultDeleter>;

inline std::string trim_message(const char* text) {
    std::string message = text != nullptr ? text : "";
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
        message.pop_back();
    }
    return message.empty() ? "no message" : message;
}

[[noreturn]] inline void fail(PGconn* conn, const PGresult* result, std::string_view what) {
    const char* text = result != nullptr ? PQresultErrorMessage(result) : nullptr;
    if (text == nullptr || *text == '\0') {
        text = PQerrorMessage(conn);
    }
    throw PostgresError(fmt::format("postgres: {}: {}", what, trim_message(text)));
}

inline Result check(PGconn* conn, PGresult* raw, ExecStatusType expected, std::string_view what) {
    Result result(raw);
    if (!result || PQresultStatus(result.get()) != expected) {
        fail(conn, result.get(), what);
    }
    return result;
}

inline Result exec(PGconn* conn, const std::string& sql, ExecStatusType expected,
                   std::string_view what) {
    return check(conn, PQexec(conn, sql.c_str()), expected, what);
}

inline Result exec_params(PGconn* conn, const std::string& sql,
                          const std::vector<const char*>& values, ExecStatusType expected,
                          std::string_view what) {
    return check(conn,
                 PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                              values.data(), nullptr, nullptr, 0),
                 expected, what);
}

// Notices ("relation already exists, skipping") are not faults; libpq would print them.
inline void ignore_notice(void*, const char*) {}

/// Connects and sets the client encoding to UTF8 (text values are checked as UTF-8). Throws
/// PostgresError. Blocks for the connection (libpq's connect_timeout bounds it).
inline Connection connect(const std::string& conninfo) {
    Connection conn(PQconnectdb(conninfo.c_str()));
    if (!conn) {
        throw std::bad_alloc();
    }
    if (PQstatus(conn.get()) != CONNECTION_OK) {
        fail(conn.get(), nullptr, "connect");
    }
    PQsetNoticeProcessor(conn.get(), ignore_notice, nullptr);
    if (PQsetClientEncoding(conn.get(), "UTF8") != 0) {
        fail(conn.get(), nullptr, "set client_encoding to UTF8");
    }
    return conn;
}

/// `name` quoted as an SQL identifier, each dot-separated part on its own; a name holding a
/// double quote is taken as already quoted.
inline std::string quote_identifier(std::string_view name) {
    if (name.find('"') != std::string_view::npos) {
        return std::string(name);
    }
    std::string out;
    std::size_t start = 0;
    while (true) {
        const std::size_t dot = name.find('.', start);
        out += '"';
        out += name.substr(start, dot == std::string_view::npos ? name.npos : dot - start);
        out += '"';
        if (dot == std::string_view::npos) {
            return out;
        }
        out += '.';
        start = dot + 1;
    }
}

/// The index of the first byte that PostgreSQL text in UTF-8 cannot hold (a NUL byte, or
/// one that starts no valid UTF-8 sequence: overlong forms and surrogates included), or npos.
inline std::size_t invalid_text_at(std::string_view text) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    std::size_t i = 0;
    while (i < n) {
        // Runs of ASCII without NUL, 8 bytes at a time.
        while (i + 8 <= n) {
            std::uint64_t word = 0;
            std::memcpy(&word, p + i, 8);
            const bool high = (word & 0x8080808080808080ULL) != 0;
            const bool zero = ((word - 0x0101010101010101ULL) & ~word & 0x8080808080808080ULL) != 0;
            if (high || zero) {
                break;
            }
            i += 8;
        }
        if (i >= n) {
            break;
        }
        const unsigned c = p[i];
        if (c == 0) {
            return i;
        }
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t length = 0;
        std::uint32_t code = 0;
        std::uint32_t least = 0;
        if ((c & 0xE0U) == 0xC0U) {
            length = 2, code = c & 0x1FU, least = 0x80;
        } else if ((c & 0xF0U) == 0xE0U) {
            length = 3, code = c & 0x0FU, least = 0x800;
        } else if ((c & 0xF8U) == 0xF0U) {
            length = 4, code = c & 0x07U, least = 0x10000;
        } else {
            return i;
        }
        if (i + length > n) {
            return i;
        }
        for (std::size_t k = 1; k < length; ++k) {
            const unsigned next = p[i + k];
            if ((next & 0xC0U) != 0x80U) {
                return i;
            }
            code = (code << 6) | (next & 0x3FU);
        }
        if (code < least || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
            return i;
        }
        i += length;
    }
    return std::string_view::npos;
}

/// Throws std::invalid_argument when `text` cannot be PostgreSQL text.
inline void check_text(std::string_view text) {
    const std::size_t at = invalid_text_at(text);
    if (at != std::string_view::npos) {
        throw std::invalid_argument(
            fmt::format("byte {} of a text value is {} (0x{:02x}); PostgreSQL text holds UTF-8 "
                        "without NUL bytes (a bytea column holds any bytes)",
                        at, text[at] == '\0' ? "a NUL byte" : "not valid UTF-8",
                        static_cast<unsigned char>(text[at])));
    }
}

/// The values of a batch's rows, as COPY text-format lines or as NUL-terminated text
/// parameters. Recycled from batch to batch (no allocation once grown). Not thread-safe.
class RowBuilder {
  public:
    void reset(WriteMethod method, std::size_t columns) {
        method_ = method;
        columns_ = columns;
        data_.clear();
        starts_.clear();
        rows_ = 0;
    }

    void begin_row() noexcept {
        row_data_ = data_.size();
        row_starts_ = starts_.size();
        row_values_ = 0;
    }
    /// Ends the row; throws std::invalid_argument unless it has one value per column.
    void end_row() {
        if (row_values_ != columns_) {
            throw std::invalid_argument(
                fmt::format("the mapping gave {} values for {} columns", row_values_, columns_));
        }
        if (method_ == WriteMethod::copy) {
            data_ += '\n';
        }
        ++rows_;
    }
    /// Forgets the values of the row begun last.
    void abort_row() {
        data_.resize(row_data_);
        starts_.resize(row_starts_);
    }

    void add_text(std::string_view text) {
        check_text(text);
        start_value();
        if (method_ == WriteMethod::copy) {
            append_copy_escaped(text);
        } else {
            data_.append(text);
        }
        end_value();
    }
    void add_raw(std::string_view digits) {  // numbers and booleans: nothing to escape
        start_value();
        data_.append(digits);
        end_value();
    }
    void add_bytes(std::string_view bytes) {
        start_value();
        data_.append(method_ == WriteMethod::copy ? "\\\\x" : "\\x");
        constexpr std::string_view hex = "0123456789abcdef";
        for (char c : bytes) {
            const auto u = static_cast<unsigned char>(c);
            data_ += hex[u >> 4];
            data_ += hex[u & 0xFU];
        }
        end_value();
    }
    void add_null() {
        if (method_ == WriteMethod::copy) {
            start_value();
            data_.append("\\N");
        } else {
            ++row_values_;
            starts_.push_back(null_value);
        }
    }

    std::size_t rows() const noexcept { return rows_; }
    std::size_t values_in_row() const noexcept { return row_values_; }
    /// COPY: the text of the rows not yet sent.
    std::string& copy_data() noexcept { return data_; }
    /// INSERT: a pointer per value (nullptr for NULL), valid until the next change.
    void parameters(std::vector<const char*>& out) const {
        out.clear();
        for (std::ptrdiff_t start : starts_) {
            out.push_back(start == null_value ? nullptr
                                              : data_.data() + static_cast<std::size_t>(start));
        }
    }

  private:
    static constexpr std::ptrdiff_t null_value = -1;

    void start_value() {
        if (method_ == WriteMethod::copy) {
            if (row_values_ != 0) {
                data_ += '\t';
            }
        } else {
            starts_.push_back(static_cast<std::ptrdiff_t>(data_.size()));
        }
        ++row_values_;
    }
    void end_value() {
        if (method_ == WriteMethod::insert) {
            data_ += '\0';
        }
    }
    void append_copy_escaped(std::string_view text) {
        std::size_t from = 0;
        for (std::size_t i = 0; i < text.size(); ++i) {
            const char* escaped = nullptr;
            switch (text[i]) {
                case '\\':
                    escaped = "\\\\";
                    break;
                case '\n':
                    escaped = "\\n";
                    break;
                case '\r':
                    escaped = "\\r";
                    break;
                case '\t':
                    escaped = "\\t";
                    break;
                default:
                    continue;
            }
            data_.append(text.data() + from, i - from);
            data_.append(escaped, 2);
            from = i + 1;
        }
        data_.append(text.data() + from, text.size() - from);
    }

    WriteMethod method_{WriteMethod::copy};
    std::size_t columns_{0};
    std::string data_;
    std::vector<std::ptrdiff_t> starts_;  // INSERT: where each value starts in data_
    std::size_t rows_{0};
    std::size_t row_data_{0};
    std::size_t row_starts_{0};
    std::size_t row_values_{0};
};

// Device, inode and hash are unsigned 64-bit; bigint columns hold their bits.
inline std::string as_bigint(std::uint64_t value) {
    return std::to_string(std::bit_cast<std::int64_t>(value));
}
inline std::uint64_t from_bigint(const char* text) {
    return std::bit_cast<std::uint64_t>(static_cast<std::int64_t>(std::strtoll(text, nullptr, 10)));
}

/// The path as text: bytes PostgreSQL text cannot hold are percent-encoded (it is only shown).
inline std::string printable_path(std::string_view path) {
    if (invalid_text_at(path) == std::string_view::npos && path.find('%') == path.npos) {
        return std::string(path);
    }
    std::string out;
    for (char c : path) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x80 || c == '%') {
            out += fmt::format("%{:02X}", u);
        } else {
            out += c;
        }
    }
    return out;
}

struct PositionsSql {
    std::string create;
    std::string select_one;  // $1 stream, $2 device, $3 inode
    std::string latest;      // $1 stream
    std::string all;         // $1 stream
    std::string upsert;      // $1..$8
    std::string exists;      // $1 the quoted table name
};

/// Throws std::invalid_argument unless `table` is a plain, optionally schema-qualified name:
/// it is also spelled inside string literals (the sequence's name, to_regclass).
inline void check_positions_table(std::string_view table) {
    if (table.empty() || table.find_first_of("\"'\\") != std::string_view::npos) {
        throw std::invalid_argument(fmt::format(
            "snaptail::postgres: positions table '{}' must be a plain name (schema.name at most), "
            "without quotes or backslashes",
            table));
    }
}

inline PositionsSql positions_sql(std::string_view table) {
    check_positions_table(table);
    const std::string t = quote_identifier(table);
    const std::string seq = quote_identifier(fmt::format("{}_written", table));
    const std::string columns =
        "fingerprint_hash, fingerprint_bytes, byte_offset, line, file_device, file_inode";
    PositionsSql sql;
    sql.create = fmt::format(
        "CREATE SEQUENCE IF NOT EXISTS {0};\n"
        "CREATE TABLE IF NOT EXISTS {1} (\n"
        "  stream text NOT NULL,\n"
        "  file_device bigint NOT NULL,\n"
        "  file_inode bigint NOT NULL,\n"
        "  fingerprint_hash bigint NOT NULL,\n"
        "  fingerprint_bytes integer NOT NULL,\n"
        "  byte_offset bigint NOT NULL,\n"
        "  line bigint NOT NULL,\n"
        "  path text NOT NULL,\n"
        "  written bigint NOT NULL,\n"
        "  updated_at timestamptz NOT NULL DEFAULT now(),\n"
        "  PRIMARY KEY (stream, file_device, file_inode))",
        seq, t);
    sql.select_one = fmt::format(
        "SELECT {} FROM {} WHERE stream = $1 AND file_device = $2 AND file_inode = $3 FOR UPDATE",
        columns, t);
    sql.latest = fmt::format("SELECT {} FROM {} WHERE stream = $1 ORDER BY written DESC LIMIT 1",
                             columns, t);
    sql.all = fmt::format("SELECT {} FROM {} WHERE stream = $1 ORDER BY written", columns, t);
    sql.upsert = fmt::format(
        "INSERT INTO {0} (stream, file_device, file_inode, fingerprint_hash, fingerprint_bytes, "
        "byte_offset, line, path, written, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, nextval('{1}'), now()) "
        "ON CONFLICT (stream, file_device, file_inode) DO UPDATE SET "
        "fingerprint_hash = EXCLUDED.fingerprint_hash, "
        "fingerprint_bytes = EXCLUDED.fingerprint_bytes, byte_offset = EXCLUDED.byte_offset, "
        "line = EXCLUDED.line, path = EXCLUDED.path, written = EXCLUDED.written, "
        "updated_at = EXCLUDED.updated_at",
        t, seq);
    sql.exists = "SELECT to_regclass($1) IS NOT NULL";
    return sql;
}

/// A stored position from a row of the columns positions_sql selects.
inline Position position_of(const PGresult* result, int row) {
    Position p;
    p.fingerprint.hash = from_bigint(PQgetvalue(result, row, 0));
    p.fingerprint.bytes =
        static_cast<std::uint32_t>(std::strtoul(PQgetvalue(result, row, 1), nullptr, 10));
    p.offset = static_cast<std::uint64_t>(std::strtoll(PQgetvalue(result, row, 2), nullptr, 10));
    p.line = static_cast<std::uint64_t>(std::strtoll(PQgetvalue(result, row, 3), nullptr, 10));
    p.file.device = from_bigint(PQgetvalue(result, row, 4));
    p.file.inode = from_bigint(PQgetvalue(result, row, 5));
    return p;
}

inline std::vector<Position> load(PGconn* conn, std::string_view stream,
                                  std::string_view positions_table, bool latest_only) {
    const PositionsSql sql = positions_sql(positions_table);
    const std::string quoted = quote_identifier(positions_table);
    const Result exists = exec_params(conn, sql.exists, {quoted.c_str()}, PGRES_TUPLES_OK,
                                      "look for the positions table");
    std::vector<Position> out;
    if (std::string_view(PQgetvalue(exists.get(), 0, 0)) != "t") {
        return out;  // nothing was ever stored
    }
    const std::string stream_text(stream);
    const Result rows = exec_params(conn, latest_only ? sql.latest : sql.all, {stream_text.c_str()},
                                    PGRES_TUPLES_OK, "load positions");
    for (int i = 0; i < PQntuples(rows.get()); ++i) {
        out.push_back(position_of(rows.get(), i));
    }
    return out;
}

/// One connection and the statements a Sink runs on it; connects when needed and forgets a
/// connection that failed, so that the next batch reconnects. Not thread-safe.
class Session {
  public:
    explicit Session(const Options& options)
        : options_(options), positions_(positions_sql(options.positions_table)) {
        std::string columns;
        std::string placeholders;
        for (std::size_t i = 0; i < options.columns.size(); ++i) {
            columns += (i == 0 ? "" : ", ") + quote_identifier(options.columns[i]);
        }
        table_ = quote_identifier(options.table);
        copy_sql_ = fmt::format("COPY {} ({}) FROM STDIN", table_, columns);
        insert_head_ = fmt::format("INSERT INTO {} ({}) VALUES ", table_, columns);
    }

    /// The open connection, connecting (and running the setup) first if there is none.
    PGconn* connection(std::atomic<std::uint64_t>& connects) {
        if (conn_ && PQstatus(conn_.get()) == CONNECTION_OK) {
            return conn_.get();
        }
        conn_.reset();
        Connection fresh = connect(options_.conninfo);
        if (!options_.positions_table.empty()) {
            exec(fresh.get(), positions_.create, PGRES_COMMAND_OK, "create the positions table");
        }
        if (!options_.setup_sql.empty()) {
            exec(fresh.get(), options_.setup_sql, PGRES_COMMAND_OK, "run setup_sql");
        }
        prepared_rows_ = 0;
        conn_ = std::move(fresh);
        ++connects;
        return conn_.get();
    }

    /// After a failure: a broken connection is dropped (the next batch reconnects); a working
    /// one has its transaction rolled back, or is dropped if even that fails.
    void recover() noexcept {
        if (!conn_) {
            return;
        }
        if (PQstatus(conn_.get()) != CONNECTION_OK) {
            conn_.reset();
            return;
        }
        // A COPY still in progress must be ended before anything else is sent.
        if (PQtransactionStatus(conn_.get()) == PQTRANS_ACTIVE) {
            if (PQputCopyEnd(conn_.get(), "snaptail: batch abandoned") == 1) {
                while (Result r{PQgetResult(conn_.get())}) {
                }
            }
        }
        Result r(PQexec(conn_.get(), "ROLLBACK"));
        if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK ||
            PQtransactionStatus(conn_.get()) != PQTRANS_IDLE) {
            conn_.reset();
        }
    }

    void begin() { exec(conn_.get(), "BEGIN", PGRES_COMMAND_OK, "BEGIN"); }
    void rollback() { exec(conn_.get(), "ROLLBACK", PGRES_COMMAND_OK, "ROLLBACK"); }
    void commit() {
        const Result r = exec(conn_.get(), "COMMIT", PGRES_COMMAND_OK, "COMMIT");
        // COMMIT of a failed transaction answers ROLLBACK.
        if (std::string_view(PQcmdStatus(r.get())) != "COMMIT") {
            throw PostgresError(
                fmt::format("postgres: COMMIT was answered with {}", PQcmdStatus(r.get())));
        }
    }

    /// The stored position of (stream, file), locked until the transaction ends.
    std::optional<Position> lock_position(FileId file) {
        const std::string device = as_bigint(file.device);
        const std::string inode = as_bigint(file.inode);
        const Result r = exec_params(conn_.get(), positions_.select_one,
                                     {options_.stream.c_str(), device.c_str(), inode.c_str()},
                                     PGRES_TUPLES_OK, "read the stored position");
        if (PQntuples(r.get()) == 0) {
            return std::nullopt;
        }
        return position_of(r.get(), 0);
    }

    void store_position(const Position& p, std::string_view path) {
        const std::string device = as_bigint(p.file.device);
        const std::string inode = as_bigint(p.file.inode);
        const std::string hash = as_bigint(p.fingerprint.hash);
        const std::string bytes = std::to_string(p.fingerprint.bytes);
        const std::string offset = std::to_string(p.offset);
        const std::string line = std::to_string(p.line);
        const std::string shown = printable_path(path);
        exec_params(conn_.get(), positions_.upsert,
                    {options_.stream.c_str(), device.c_str(), inode.c_str(), hash.c_str(),
                     bytes.c_str(), offset.c_str(), line.c_str(), shown.c_str()},
                    PGRES_COMMAND_OK, "store the position");
    }

    void copy_begin() {
        exec(conn_.get(), copy_sql_, PGRES_COPY_IN, fmt::format("COPY into {}", table_));
    }
    /// Sends what `data` holds and clears it. Blocks while libpq's buffer drains.
    void copy_send(std::string& data) {
        std::string_view left = data;
        while (!left.empty()) {
            const std::size_t chunk = std::min<std::size_t>(left.size(), std::size_t{1} << 30);
            if (PQputCopyData(conn_.get(), left.data(), static_cast<int>(chunk)) != 1) {
                fail(conn_.get(), nullptr, "send COPY data");
            }
            left.remove_prefix(chunk);
        }
        data.clear();
    }
    void copy_end() {
        if (PQputCopyEnd(conn_.get(), nullptr) != 1) {
            fail(conn_.get(), nullptr, "end COPY");
        }
        // Every result must be collected; the first failure is the one reported.
        std::optional<std::string> error;
        while (Result r{PQgetResult(conn_.get())}) {
            if (PQresultStatus(r.get()) != PGRES_COMMAND_OK && !error) {
                error = trim_message(PQresultErrorMessage(r.get()));
            }
        }
        if (error) {
            throw PostgresError(fmt::format("postgres: COPY into {}: {}", table_, *error));
        }
    }

    /// Sends the rows as INSERT statements of options.insert_rows rows (a prepared one) and
    /// one for the rest.
    void insert(const RowBuilder& rows) {
        const std::size_t columns = options_.columns.size();
        const std::size_t per_statement =
            std::max<std::size_t>(1, std::min(options_.insert_rows, 65535 / columns));
        rows.parameters(values_);
        std::size_t done = 0;
        while (done < rows.rows()) {
            const std::size_t n = std::min(per_statement, rows.rows() - done);
            const char* const* values = values_.data() + done * columns;
            const int count = static_cast<int>(n * columns);
            if (n == per_statement) {
                if (prepared_rows_ != n) {
                    check(conn_.get(),
                          PQprepare(conn_.get(), "snaptail_insert", insert_sql(n).c_str(), count,
                                    nullptr),
                          PGRES_COMMAND_OK, "prepare INSERT");
                    prepared_rows_ = n;
                }
                check(conn_.get(),
                      PQexecPrepared(conn_.get(), "snaptail_insert", count, values, nullptr,
                                     nullptr, 0),
                      PGRES_COMMAND_OK, fmt::format("INSERT into {}", table_));
            } else {
                check(conn_.get(),
                      PQexecParams(conn_.get(), insert_sql(n).c_str(), count, nullptr, values,
                                   nullptr, nullptr, 0),
                      PGRES_COMMAND_OK, fmt::format("INSERT into {}", table_));
            }
            done += n;
        }
    }

  private:
    std::string insert_sql(std::size_t rows) const {
        const std::size_t columns = options_.columns.size();
        std::string sql = insert_head_;
        std::size_t parameter = 1;
        for (std::size_t r = 0; r < rows; ++r) {
            sql += r == 0 ? "(" : ",(";
            for (std::size_t c = 0; c < columns; ++c) {
                fmt::format_to(std::back_inserter(sql), "{}${}", c == 0 ? "" : ",", parameter++);
            }
            sql += ')';
        }
        return sql;
    }

    const Options& options_;
    PositionsSql positions_;
    std::string table_;
    std::string copy_sql_;
    std::string insert_head_;
    Connection conn_;
    std::size_t prepared_rows_{0};
    std::vector<const char*> values_;
};

}  // namespace detail

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
