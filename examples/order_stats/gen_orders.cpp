// gen_orders: writes an exchange node's order-status log, one JSON object per line (~280
// bytes), the same bytes for the same seed: as fast as it can up to a size or line count, or at
// a steady rate, optionally with malformed lines and lines of another kind mixed in.
#include "../example_cli.hpp"

#include <fcntl.h>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace {

using snaptail::examples::add_number;
using snaptail::examples::usage_error;
using snaptail::examples::write_all;

// "1G", "200M", "64k", "1000": a count with an optional 1024-based suffix, as a validator that
// rewrites the text into the plain number.
std::string expand_suffix(std::string& text) {
    std::uint64_t value = 0;
    const char* end = text.data() + text.size();
    const auto [stop, ec] = std::from_chars(text.data(), end, value);
    std::uint64_t scale = 1;
    const std::string_view suffix(stop, static_cast<std::size_t>(end - stop));
    if (suffix == "K" || suffix == "k") {
        scale = std::uint64_t{1} << 10;
    } else if (suffix == "M" || suffix == "m") {
        scale = std::uint64_t{1} << 20;
    } else if (suffix == "G" || suffix == "g") {
        scale = std::uint64_t{1} << 30;
    } else if (!suffix.empty()) {
        return fmt::format("needs a non-negative integer (with an optional K, M or G), got '{}'",
                           text);
    }
    if (ec != std::errc{} || value > UINT64_MAX / scale) {
        return fmt::format("needs a non-negative integer, got '{}'", text);
    }
    text = std::to_string(value * scale);
    return {};
}

struct Config {
    std::optional<std::uint64_t> bytes;
    std::optional<std::uint64_t> lines;
    std::uint64_t rate{0};
    std::optional<std::uint64_t> seconds;
    std::uint64_t seed{1};
    std::uint64_t bad_every{0};
    std::uint64_t other_every{0};
    std::uint64_t first_seq{1};
    std::string path{"-"};
    std::string hourly;  // the node's layout: <hourly>/<date>/<hour>
    std::uint64_t hour_lines{0};
    std::uint64_t hour_seconds{0};
};

Config parse_args(int argc, char** argv) {
    Config config;
    CLI::App app(
        "Appends an order-status log to PATH (created if missing), or writes it to stdout if "
        "PATH is\n'-' or missing: one JSON object per line, the same bytes for the same seed and "
        "options.",
        "gen_orders");
    snaptail::examples::set_style(app);
    app.footer("Without --rate, one of --bytes or --lines is required.");
    const CLI::Validator with_suffix(expand_suffix, "");
    app.add_option("--bytes", config.bytes,
                   "stop once N bytes are written (suffix K, M or G: 1024-based, e.g. 1G)")
        ->transform(with_suffix)
        ->type_name("N");
    app.add_option("--lines", config.lines, "stop once N lines are written")
        ->transform(with_suffix)
        ->type_name("N");
    app.add_option("--rate", config.rate,
                   "write N lines per second (in 10 ms ticks) instead of as fast as possible")
        ->transform(with_suffix)
        ->type_name("N");
    add_number(app, "--seconds", config.seconds,
               "with --rate: stop after S seconds (default: run until killed)")
        ->type_name("S");
    add_number(app, "--seed", config.seed, "random seed (default 1)");
    add_number(app, "--bad-every", config.bad_every,
               "make every Nth line malformed: truncated, not JSON, a bad number,\n"
               "a missing field or a bad side, in turn (default 0: none)");
    add_number(app, "--other-every", config.other_every,
               "make every Nth line a JSON object that is not an order (default 0: none)");
    add_number(app, "--first-seq", config.first_seq, "seq of the first line (default 1)");
    app.add_option("--hourly", config.hourly,
                   "write the node's layout instead of PATH: DIR/<date>/<hour> (no zero\n"
                   "padding: .../20261126/9, .../20261126/10), a new hour file every\n"
                   "--hour-lines lines or --hour-seconds seconds, a new date folder after\n"
                   "hour 23; starts at 20261126/17")
        ->type_name("DIR");
    add_number(app, "--hour-lines", config.hour_lines, "with --hourly: lines per hour file")
        ->type_name("N");
    add_number(app, "--hour-seconds", config.hour_seconds,
               "with --hourly and --rate: seconds per hour file")
        ->type_name("S");
    app.add_option("PATH", config.path, "where to append ('-' or none: stdout)")->type_name("");
    snaptail::examples::parse_command_line(app, argc, argv);
    if (!config.hourly.empty() && config.path != "-") {
        usage_error("give either PATH or --hourly DIR");
    }
    if (config.hourly.empty() && (config.hour_lines != 0 || config.hour_seconds != 0)) {
        usage_error("--hour-lines and --hour-seconds go with --hourly");
    }
    if (!config.hourly.empty() && (config.hour_lines == 0) == (config.hour_seconds == 0)) {
        usage_error("--hourly needs one of --hour-lines N and --hour-seconds S");
    }
    if (config.hour_seconds != 0 && config.rate == 0) {
        usage_error("--hour-seconds needs --rate");
    }
    if (config.seconds && config.rate == 0) {
        usage_error("--seconds needs --rate");
    }
    if (config.rate == 0 && !config.bytes && !config.lines) {
        usage_error("say how much to write: --bytes N, --lines N, or --rate N [--seconds S]");
    }
    return config;
}

// xoshiro256** seeded through splitmix64: the same numbers on every platform, unlike the
// standard distributions.
class Random {
  public:
    explicit Random(std::uint64_t seed) noexcept {
        for (auto& word : state_) {
            seed += 0x9e3779b97f4a7c15;
            std::uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
            z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
            word = z ^ (z >> 31);
        }
    }

    std::uint64_t next() noexcept {
        const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
        const std::uint64_t t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }

    /// Uniform in [0, 1).
    double unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    /// Uniform in [0, n).
    std::size_t below(std::size_t n) noexcept {
        return static_cast<std::size_t>(unit() * static_cast<double>(n));
    }
    /// Standard normal (Box-Muller).
    double normal() noexcept {
        const double u = 1.0 - unit();
        return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * 3.141592653589793 * unit());
    }
    /// Index into `weights` with probability proportional to its weight.
    template <std::size_t N>
    std::size_t pick(const std::array<double, N>& weights) noexcept {
        double total = 0;
        for (double w : weights) {
            total += w;
        }
        double x = unit() * total;
        for (std::size_t i = 0; i < N; ++i) {
            if (x < weights[i]) {
                return i;
            }
            x -= weights[i];
        }
        return N - 1;
    }

  private:
    static std::uint64_t rotl(std::uint64_t x, int k) noexcept {
        return (x << k) | (x >> (64 - k));
    }
    std::array<std::uint64_t, 4> state_{};
};

struct Coin {
    std::string_view name;
    double price;     // starting mid price, USD
    int px_decimals;  // decimals of limitPx
    int sz_decimals;  // decimals of sz
    double weight;    // share of the order flow
};

// Roughly a perp venue's late-2026 order flow: the majors dominate.
constexpr std::array<Coin, 16> coins{{
    {"BTC", 97000.0, 1, 4, 28},
    {"ETH", 3600.0, 2, 4, 18},
    {"SOL", 240.0, 3, 2, 10},
    {"HYPE", 25.0, 3, 2, 9},
    {"XRP", 2.3, 4, 0, 5},
    {"DOGE", 0.38, 5, 0, 4},
    {"SUI", 4.2, 4, 1, 3},
    {"AVAX", 45.0, 3, 2, 3},
    {"LINK", 24.0, 3, 1, 3},
    {"kPEPE", 0.02, 6, 0, 3},
    {"WIF", 2.8, 4, 0, 2},
    {"ADA", 1.05, 4, 0, 2},
    {"BNB", 690.0, 2, 3, 2},
    {"LTC", 105.0, 2, 2, 2},
    {"TRUMP", 13.0, 3, 1, 1},
    {"ENA", 1.1, 4, 0, 1},
}};

constexpr std::array<std::string_view, 5> statuses{"open", "canceled", "filled", "rejected",
                                                   "triggered"};
constexpr std::array<double, 5> status_weights{46, 30, 17, 4, 3};
constexpr std::array<std::string_view, 3> tifs{"Gtc", "Alo", "Ioc"};
constexpr std::array<double, 3> tif_weights{60, 25, 15};
constexpr std::array<std::string_view, 3> trigger_types{"Stop Market", "Take Profit Market",
                                                        "Stop Limit"};

// 2026-11-26T17:00:00.000Z
constexpr std::int64_t start_ms = 1'795'712'400'000;
// Time between lines when writing as fast as possible: a busy node's ~10k lines/s.
constexpr double default_ms_per_line = 0.1;

class Generator {
  public:
    Generator(const Config& config)
        : config_(config), random_(config.seed), seq_(config.first_seq) {
        for (const Coin& coin : coins) {
            mid_.push_back(coin.price);
            weights_[static_cast<std::size_t>(&coin - coins.data())] = coin.weight;
        }
        users_.reserve(2000);
        for (int i = 0; i < 2000; ++i) {
            users_.push_back(fmt::format("0x{:016x}{:016x}{:08x}", random_.next(), random_.next(),
                                         random_.next() >> 32));
        }
        recent_oids_.resize(4096);
        for (auto& oid : recent_oids_) {
            oid = next_oid_++;
        }
    }

    /// Appends the next line (with its '\n') to `out`; `time_ms` is its event time.
    void append_line(std::string& out, double time_ms) {
        const std::uint64_t seq = seq_++;
        const auto ms = start_ms + static_cast<std::int64_t>(time_ms);
        const bool bad = config_.bad_every != 0 && seq % config_.bad_every == 0;
        if (!bad && config_.other_every != 0 && seq % config_.other_every == 0) {
            fmt::format_to(std::back_inserter(out),
                           R"({{"seq":{},"time":"{}","type":"heartbeat","height":{}}})"
                           "\n",
                           seq, iso_time(ms), 800'000'000 + seq / 8);
            ++other_lines_;
            return;
        }
        const std::size_t begin = out.size();
        append_order(out, seq, ms);
        if (bad) {
            spoil(out, begin);
            ++bad_lines_;
        }
    }

    std::uint64_t bad_lines() const noexcept { return bad_lines_; }
    std::uint64_t other_lines() const noexcept { return other_lines_; }

  private:
    static std::string iso_time(std::int64_t ms) {
        const std::chrono::sys_time<std::chrono::milliseconds> t{std::chrono::milliseconds{ms}};
        return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}",
                           std::chrono::floor<std::chrono::seconds>(t), ms % 1000);
    }

    void append_order(std::string& out, std::uint64_t seq, std::int64_t ms) {
        const std::size_t c = random_.pick(weights_);
        const Coin& coin = coins[c];
        double& mid = mid_[c];
        mid *= std::exp(0.0003 * random_.normal());
        const bool buy = random_.unit() < 0.5;
        // Resting orders sit a little off the mid, on their own side.
        const double offset = std::abs(0.002 * random_.normal());
        const double px = mid * (buy ? 1.0 - offset : 1.0 + offset);
        // Order notional is heavy-tailed: median ~$1,500.
        const double notional = std::clamp(1500.0 * std::exp(1.4 * random_.normal()), 11.0, 3e6);
        const double unit = std::pow(10.0, -coin.sz_decimals);
        const double sz = std::max(unit, std::round(notional / px / unit) * unit);

        const std::size_t s = random_.pick(status_weights);
        const std::string_view status = statuses[s];
        std::uint64_t oid = 0;
        if (status == "open" || status == "rejected") {
            oid = next_oid_++;
            recent_oids_[oid % recent_oids_.size()] = oid;
        } else {
            oid = recent_oids_[random_.below(recent_oids_.size())];
        }
        const bool trigger = status == "triggered";
        const std::string_view order_type =
            trigger ? trigger_types[random_.below(trigger_types.size())] : "Limit";
        const std::string_view tif = trigger ? "Gtc" : tifs[random_.pick(tif_weights)];
        const bool reduce_only = random_.unit() < (trigger ? 0.7 : 0.08);
        const std::string& user = users_[random_.below(users_.size())];

        fmt::format_to(std::back_inserter(out),
                       R"({{"seq":{},"time":"{}","user":"{}","status":"{}","order":{{)"
                       R"("coin":"{}","side":"{}","limitPx":"{:.{}f}","sz":"{:.{}f}","oid":{},)"
                       R"("timestamp":{},"orderType":"{}","tif":"{}","reduceOnly":{}}}}})"
                       "\n",
                       seq, iso_time(ms), user, status, coin.name, buy ? "B" : "A", px,
                       coin.px_decimals, sz, coin.sz_decimals, oid, ms, order_type, tif,
                       reduce_only);
    }

    // Turns the order line at out[begin..] into one of five kinds of bad line, in turn.
    void spoil(std::string& out, std::size_t begin) {
        std::string line = out.substr(begin, out.size() - begin - 1);
        out.resize(begin);
        auto replace = [&line](std::string_view from, std::string_view to) {
            const auto at = line.find(from);
            if (at != std::string::npos) {
                line.replace(at, from.size(), to);
            }
        };
        switch (bad_lines_ % 5) {
            case 0:  // cut short, as by a crash mid-write
                line.resize(line.size() / 2 + random_.below(line.size() / 4));
                break;
            case 1:  // not JSON at all
                line = fmt::format("WARN order-status writer: {} entries dropped (backpressure)",
                                   1 + random_.below(500));
                break;
            case 2:  // a price that is not a number
                replace(R"("limitPx":")", R"("limitPx":"n/a)");
                break;
            case 3:  // a required field missing
                replace(R"("sz":")", R"("size":")");
                break;
            default:  // a side that is neither B nor A
                replace(R"("side":")", R"("side":"X)");
                break;
        }
        out += line;
        out += '\n';
    }

    const Config& config_;
    Random random_;
    std::uint64_t seq_;
    std::uint64_t next_oid_{40'000'000'000};
    std::vector<std::uint64_t> recent_oids_;
    std::vector<double> mid_;
    std::array<double, coins.size()> weights_{};
    std::vector<std::string> users_;
    std::uint64_t bad_lines_{0};
    std::uint64_t other_lines_{0};
};

// Where lines go: PATH, stdout, or the node's hourly layout, whose current file rolls over to
// the next hour (and, after hour 23, to the next date's folder).
class Output {
  public:
    explicit Output(const Config& config) : config_(config) {
        if (!config.hourly.empty()) {
            open_hour();
        } else if (config.path != "-") {
            open(config.path);
        }
    }
    Output(const Output&) = delete;
    Output& operator=(const Output&) = delete;
    ~Output() { close(); }

    void write(std::string_view data) { write_all(fd_, data, "write"); }
    /// The file written now ("-" for stdout).
    const std::string& name() const noexcept { return name_; }
    /// Hourly: moves to the next hour's file. Everything written so far is in the old one.
    void next_hour() {
        if (++hour_ == 24) {
            hour_ = 0;
            date_ = next_date(date_);
        }
        open_hour();
    }
    std::uint64_t files() const noexcept { return files_; }

  private:
    // 20261126 -> 20261127, across months and years.
    static int next_date(int date) {
        const std::chrono::year_month_day day{std::chrono::year{date / 10000},
                                              std::chrono::month{unsigned(date / 100 % 100)},
                                              std::chrono::day{unsigned(date % 100)}};
        const std::chrono::year_month_day next{std::chrono::sys_days{day} + std::chrono::days{1}};
        return int(next.year()) * 10000 + int(unsigned(next.month())) * 100 +
               int(unsigned(next.day()));
    }

    void open_hour() {
        const std::string folder = fmt::format("{}/{}", config_.hourly, date_);
        std::error_code error;
        std::filesystem::create_directories(folder, error);
        if (error) {
            throw std::system_error(error, "cannot create " + folder);
        }
        open(fmt::format("{}/{}", folder, hour_));
    }

    void open(const std::string& path) {
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            throw std::system_error(errno, std::system_category(), path);
        }
        close();
        fd_ = fd;
        name_ = path;
        ++files_;
    }

    void close() noexcept {
        if (fd_ != STDOUT_FILENO) {
            ::close(fd_);
        }
        fd_ = STDOUT_FILENO;
    }

    const Config& config_;
    int fd_{STDOUT_FILENO};
    std::string name_{"-"};
    int date_{20261126};
    int hour_{17};
    std::uint64_t files_{0};
};

}  // namespace

int main(int argc, char** argv) {
    const Config config = parse_args(argc, argv);
    std::optional<Output> output;
    try {
        output.emplace(config);
    } catch (const std::system_error& e) {
        fmt::print(stderr, "gen_orders: {}\n", e.what());
        return 1;
    }

    Generator generator(config);
    std::string out;
    out.reserve(std::size_t{1} << 21);
    std::uint64_t lines = 0;
    std::uint64_t bytes = 0;
    auto done = [&] {
        return (config.bytes && bytes >= *config.bytes) || (config.lines && lines >= *config.lines);
    };
    auto flush = [&] {
        output->write(out);
        out.clear();
    };
    const auto started = std::chrono::steady_clock::now();
    std::uint64_t hour_index = 0;  // hourly: which hour of the run is being written
    auto emit = [&](double time_ms) {
        // An hour ends on a line boundary: what is buffered belongs to the old file.
        if (!config.hourly.empty()) {
            const std::uint64_t hour =
                config.hour_lines != 0
                    ? lines / config.hour_lines
                    : static_cast<std::uint64_t>(
                          std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
                              .count()) /
                          config.hour_seconds;
            if (hour != hour_index) {
                flush();
                for (; hour_index < hour; ++hour_index) {
                    output->next_hour();
                }
            }
        }
        const std::size_t before = out.size();
        generator.append_line(out, time_ms);
        bytes += out.size() - before;
        ++lines;
    };

    try {
        if (config.rate == 0) {
            double time_ms = 0;
            while (!done()) {
                emit(time_ms);
                time_ms += default_ms_per_line;
                if (out.size() >= (std::size_t{1} << 20)) {
                    flush();
                }
            }
            flush();
        } else {
            // Each 10 ms tick writes the lines due by then, whole, in one write.
            const auto tick = std::chrono::milliseconds{10};
            const double ms_per_line = 1000.0 / static_cast<double>(config.rate);
            auto next = started;
            while (!done()) {
                const auto now = std::chrono::steady_clock::now();
                if (config.seconds && now - started >= std::chrono::seconds(*config.seconds)) {
                    break;
                }
                const auto elapsed = std::chrono::duration<double>(now - started).count();
                const auto due =
                    static_cast<std::uint64_t>(elapsed * static_cast<double>(config.rate));
                while (lines < due && !done()) {
                    emit(static_cast<double>(lines) * ms_per_line);
                }
                flush();
                next += tick;
                std::this_thread::sleep_until(next);
            }
        }
    } catch (const std::system_error& e) {
        fmt::print(stderr, "gen_orders: {}: {}\n", output->name(), e.what());
        return 1;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    fmt::print(stderr,
               "gen_orders: {} lines ({} bad, {} other), {} bytes ({:.0f} bytes/line) to {} in "
               "{:.2f} s ({:.0f} lines/s)\n",
               lines, generator.bad_lines(), generator.other_lines(), bytes,
               lines != 0 ? static_cast<double>(bytes) / static_cast<double>(lines) : 0.0,
               config.hourly.empty()
                   ? config.path
                   : fmt::format("{} ({} hour files)", config.hourly, output->files()),
               seconds, static_cast<double>(lines) / seconds);
    return 0;
}
