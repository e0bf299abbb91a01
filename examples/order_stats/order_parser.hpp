// OrderParser: one line of an exchange node's order-status log -> OrderRecord, parsed in place
// with simdjson On-Demand (no copy of the line: the tailer leaves snaptail::line_padding
// readable bytes after every line).
//
//     {"seq":12,"time":"2026-11-26T17:00:00.012","user":"0x…","status":"open",
//      "order":{"coin":"BTC","side":"B","limitPx":"97000.5","sz":"0.0100","oid":40000000012,...}}
#pragma once

#include <snaptail/tail_options.hpp>

#include <fmt/format.h>
#include <simdjson.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace order_stats {

static_assert(snaptail::line_padding >= simdjson::SIMDJSON_PADDING,
              "simdjson parses a line in place only if the tailer pads it enough");

/// The order statuses counted separately; any other status string counts as `other`.
enum class Status : std::uint8_t { open, filled, canceled, triggered, rejected, other };
inline constexpr std::size_t status_count = 6;

/// The status's name as it appears in the log ("other" for the catch-all). Never allocates.
constexpr std::string_view to_string(Status status) noexcept {
    constexpr std::array<std::string_view, status_count> names{"open",      "filled",   "canceled",
                                                               "triggered", "rejected", "other"};
    return names[static_cast<std::size_t>(status)];
}

/// "B" (bid) is a buy, "A" (ask) a sell.
enum class Side : std::uint8_t { buy, sell };

/// A coin name copied out of the line (at most `capacity` bytes). A copy rather than a view:
/// simdjson unescapes strings into the parser's own buffer, which the next line overwrites
/// (and with parse_threads > 1 each worker has its own), so a view would not outlive parse().
class CoinName {
  public:
    static constexpr std::size_t capacity = 23;

    constexpr CoinName() noexcept = default;
    /// Throws std::length_error if `name` is longer than `capacity`.
    explicit CoinName(std::string_view name) {
        if (name.size() > capacity) {
            throw std::length_error(fmt::format("coin name \"{}\" is longer than {} bytes",
                                                name.substr(0, 64), capacity));
        }
        name.copy(bytes_.data(), name.size());
        size_ = static_cast<std::uint8_t>(name.size());
    }

    std::string_view view() const noexcept { return {bytes_.data(), size_}; }

  private:
    std::array<char, capacity> bytes_{};
    std::uint8_t size_{0};
};

/// One order-status line. Trivially copyable; holds no views.
struct OrderRecord {
    std::uint64_t seq{0};
    double px{0};  ///< limitPx
    double sz{0};  ///< size
    CoinName coin;
    Status status{Status::other};
    Side side{Side::buy};
};

/// Parses order-status lines. `parse` returns nullopt for JSON that is not an order line (not
/// an object, or an object without "order": filtered) and throws std::runtime_error, naming the
/// field and the problem, for a line that is not JSON or an order line that lacks or mangles a
/// field. Fields it does not need are skipped as simdjson On-Demand skips them (brackets and
/// quotes balanced, contents not validated) unless `strict`, which validates the whole line as
/// JSON, as json.loads does, for about a fifth more CPU time. Copying gives a fresh simdjson
/// parser (for parse_threads > 1: one per worker). Not thread-safe: one OrderParser per thread.
class OrderParser {
  public:
    explicit OrderParser(bool strict = false) noexcept : strict_(strict) {}
    OrderParser(const OrderParser& other) noexcept : strict_(other.strict_) {}
    OrderParser& operator=(const OrderParser& other) noexcept {
        strict_ = other.strict_;
        return *this;
    }
    OrderParser(OrderParser&&) noexcept = default;
    OrderParser& operator=(OrderParser&&) noexcept = default;
    ~OrderParser() = default;

    /// Parses `line` in place: at least snaptail::line_padding readable bytes must follow it.
    /// Allocates only when a line is longer than any before (simdjson's buffers grow).
    std::optional<OrderRecord> parse(std::string_view line) {
        namespace od = simdjson::ondemand;
        od::document doc;
        check(parser_.iterate(line.data(), line.size(), line.size() + snaptail::line_padding)
                  .get(doc),
              "malformed JSON");
        od::json_type root_type{};
        check(doc.type().get(root_type), "malformed JSON");
        if (root_type != od::json_type::object) {
            validate_other(doc, root_type);
            return std::nullopt;  // JSON, but not an object: not an order line
        }
        od::object root;
        check(doc.get_object().get(root), "malformed JSON");

        OrderRecord record;
        bool has_seq = false;
        bool has_status = false;
        bool has_order = false;
        for (auto field : root) {
            od::raw_json_string key;
            check(field.key().get(key), "malformed JSON");
            if (key == "seq") {
                check(field.value().get_uint64().get(record.seq), "\"seq\"");
                has_seq = true;
            } else if (key == "status") {
                std::string_view status;
                check(field.value().get_string().get(status), "\"status\"");
                record.status = status_from(status);
                has_status = true;
            } else if (key == "order") {
                od::object order;
                check(field.value().get_object().get(order), "\"order\"");
                parse_order(order, record);
                has_order = true;
            } else {
                skip(field);
            }
        }
        check_at_end(doc);
        if (!has_order) {
            return std::nullopt;  // another kind of line (no "order")
        }
        if (!has_seq) {
            throw std::runtime_error("order line without \"seq\"");
        }
        if (!has_status) {
            throw std::runtime_error("order line without \"status\"");
        }
        return record;
    }

  private:
    static void check(simdjson::error_code error, std::string_view what) {
        if (error != simdjson::SUCCESS) {
            throw std::runtime_error(fmt::format("{}: {}", what, simdjson::error_message(error)));
        }
    }

    static void check_at_end(simdjson::ondemand::document& doc) {
        if (doc.current_location().error() != simdjson::OUT_OF_BOUNDS) {
            throw std::runtime_error("malformed JSON: content after the value");
        }
    }

    // A line that is not an object is filtered if it is JSON, so it is read whole: On-Demand
    // validates only what is read. Rare, so not fast.
    static void validate_other(simdjson::ondemand::document& doc,
                               simdjson::ondemand::json_type type) {
        namespace od = simdjson::ondemand;
        switch (type) {
            case od::json_type::array: {
                od::value value;
                check(doc.get_value().get(value), "malformed JSON");
                walk(value);
                break;
            }
            case od::json_type::number: {
                od::number number;
                check(doc.get_number().get(number), "malformed JSON");
                break;
            }
            case od::json_type::string: {
                std::string_view text;
                check(doc.get_string().get(text), "malformed JSON");
                break;
            }
            case od::json_type::boolean: {
                bool flag = false;
                check(doc.get_bool().get(flag), "malformed JSON");
                break;
            }
            case od::json_type::null: {
                bool is_null = false;
                check(doc.is_null().get(is_null), "malformed JSON");
                if (!is_null) {
                    throw std::runtime_error("malformed JSON: bad literal");
                }
                break;
            }
            case od::json_type::object:
                break;
        }
        check_at_end(doc);
    }

    static void walk(simdjson::ondemand::value value) {
        namespace od = simdjson::ondemand;
        od::json_type type{};
        check(value.type().get(type), "malformed JSON");
        switch (type) {
            case od::json_type::array: {
                od::array array;
                check(value.get_array().get(array), "malformed JSON");
                for (auto element : array) {
                    od::value inner;
                    check(element.get(inner), "malformed JSON");
                    walk(inner);
                }
                break;
            }
            case od::json_type::object: {
                od::object object;
                check(value.get_object().get(object), "malformed JSON");
                for (auto field : object) {
                    od::raw_json_string key;
                    check(field.key().get(key), "malformed JSON");
                    od::value inner;
                    check(field.value().get(inner), "malformed JSON");
                    walk(inner);
                }
                break;
            }
            case od::json_type::number: {
                od::number number;
                check(value.get_number().get(number), "malformed JSON");
                break;
            }
            case od::json_type::string: {
                std::string_view text;
                check(value.get_string().get(text), "malformed JSON");
                break;
            }
            case od::json_type::boolean: {
                bool flag = false;
                check(value.get_bool().get(flag), "malformed JSON");
                break;
            }
            case od::json_type::null: {
                bool is_null = false;
                check(value.is_null().get(is_null), "malformed JSON");
                if (!is_null) {
                    throw std::runtime_error("malformed JSON: bad literal");
                }
                break;
            }
        }
    }

    static Status status_from(std::string_view s) noexcept {
        for (std::size_t i = 0; i + 1 < status_count; ++i) {
            if (s == to_string(static_cast<Status>(i))) {
                return static_cast<Status>(i);
            }
        }
        return Status::other;
    }

    // A field that parse() does not need: skipped unread, or read whole if strict_.
    void skip(simdjson::simdjson_result<simdjson::ondemand::field>& field) {
        if (!strict_) {
            check(field.error(), "malformed JSON");
            return;
        }
        simdjson::ondemand::value value;
        check(field.value().get(value), "malformed JSON");
        walk(value);
    }

    // A price or size: a decimal string, as the exchange writes it, or a JSON number.
    static double decimal(simdjson::ondemand::value& value, std::string_view name) {
        double result = 0;
        if (value.raw_json_token().starts_with('"')) {
            std::string_view text;
            check(value.get_string().get(text), name);
            const char* end = text.data() + text.size();
            const auto [stop, ec] = std::from_chars(text.data(), end, result);
            if (ec != std::errc{} || stop != end) {
                throw std::runtime_error(
                    fmt::format("{}: \"{}\" is not a decimal number", name, text.substr(0, 64)));
            }
        } else {
            check(value.get_double().get(result), name);
        }
        if (!std::isfinite(result) || result < 0) {
            throw std::runtime_error(fmt::format("{}: {} is out of range", name, result));
        }
        return result;
    }

    void parse_order(simdjson::ondemand::object& order, OrderRecord& record) {
        bool has_coin = false;
        bool has_side = false;
        bool has_px = false;
        bool has_sz = false;
        for (auto field : order) {
            simdjson::ondemand::raw_json_string key;
            check(field.key().get(key), "malformed JSON in \"order\"");
            if (key == "coin") {
                std::string_view coin;
                check(field.value().get_string().get(coin), "\"order.coin\"");
                record.coin = CoinName(coin);
                has_coin = true;
            } else if (key == "side") {
                std::string_view side;
                check(field.value().get_string().get(side), "\"order.side\"");
                if (side == "B") {
                    record.side = Side::buy;
                } else if (side == "A") {
                    record.side = Side::sell;
                } else {
                    throw std::runtime_error(fmt::format(
                        "\"order.side\": \"{}\" is neither \"B\" nor \"A\"", side.substr(0, 64)));
                }
                has_side = true;
            } else if (key == "limitPx") {
                simdjson::ondemand::value value;
                check(field.value().get(value), "\"order.limitPx\"");
                record.px = decimal(value, "\"order.limitPx\"");
                has_px = true;
            } else if (key == "sz") {
                simdjson::ondemand::value value;
                check(field.value().get(value), "\"order.sz\"");
                record.sz = decimal(value, "\"order.sz\"");
                has_sz = true;
            } else {
                skip(field);
            }
        }
        const char* missing = !has_coin   ? "coin"
                              : !has_side ? "side"
                              : !has_px   ? "limitPx"
                              : !has_sz   ? "sz"
                                          : nullptr;
        if (missing != nullptr) {
            throw std::runtime_error(fmt::format("\"order\" without \"{}\"", missing));
        }
    }

    bool strict_{false};
    simdjson::ondemand::parser parser_;
};

}  // namespace order_stats
