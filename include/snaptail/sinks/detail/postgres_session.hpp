// One PostgreSQL connection and the statements a sink runs on it: the positions table (created
// when missing), locking and upserting a stream's position, COPY and INSERT of a batch's rows.
#pragma once

#include <snaptail/sinks/detail/postgres_text.hpp>

namespace snaptail::postgres::detail {
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

}  // namespace snaptail::postgres::detail
