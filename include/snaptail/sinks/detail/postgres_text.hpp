// Talking to libpq, and PostgreSQL text: connections and results, quoting, UTF-8 checks, and the
// row buffer a batch's values are gathered in (COPY text or INSERT parameters).
#pragma once

#include <snaptail/batch.hpp>
#include <snaptail/error.hpp>
#include <snaptail/position.hpp>
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

namespace snaptail::postgres::detail {

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
}  // namespace snaptail::postgres::detail
