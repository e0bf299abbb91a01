// snaptail::postgres::Sink against a PostgreSQL server of the test's own: exactly once across
// retries, re-deliveries, kills of the writing process and a restart of the server; records the
// mapping cannot write are reported with their line numbers while the rest is written.
// SNAPTAIL_SINK_SEED=<n> replays a kill schedule.
#include "server_support.hpp"
#include "snaptail_catch.hpp"
#include "snaptail_skip.hpp"

#include <snaptail/batching_tailer.hpp>
#include <snaptail/sinks/postgres.hpp>

#include <libpq-fe.h>

#include <map>
#include <set>

using namespace snaptail;
using namespace snaptail::test;

namespace {

#ifdef SNAPTAIL_PG_FOLLOW_PATH
constexpr std::string_view pg_follow = SNAPTAIL_PG_FOLLOW_PATH;
#endif

/// A connection for the test's own queries.
class Db {
  public:
    explicit Db(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
        if (PQstatus(conn_.get()) != CONNECTION_OK) {
            throw std::runtime_error(std::string("connect: ") + PQerrorMessage(conn_.get()));
        }
        PQsetNoticeProcessor(
            conn_.get(), [](void*, const char*) {}, nullptr);
    }
    /// The rows of `sql`, each a vector of text values ("" for NULL).
    std::vector<std::vector<std::string>> query(const std::string& sql) {
        postgres::detail::Result r(PQexec(conn_.get(), sql.c_str()));
        const auto status = PQresultStatus(r.get());
        if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
            throw std::runtime_error(sql + ": " + PQresultErrorMessage(r.get()));
        }
        std::vector<std::vector<std::string>> rows;
        for (int i = 0; i < PQntuples(r.get()); ++i) {
            auto& row = rows.emplace_back();
            for (int j = 0; j < PQnfields(r.get()); ++j) {
                row.emplace_back(PQgetvalue(r.get(), i, j));
            }
        }
        return rows;
    }
    std::uint64_t count(const std::string& table) {
        return std::stoull(query("SELECT count(*) FROM " + table).at(0).at(0));
    }
    PGconn* get() const noexcept { return conn_.get(); }

  private:
    postgres::detail::Connection conn_;
};

std::uint64_t as_u64(const std::string& text) {
    return static_cast<std::uint64_t>(std::stoll(text));
}

/// Checks that `table` (RawLineMapping's columns) holds every line of `log` exactly once and,
/// in commit order (id), in file order; and that each row names the file and offset the line
/// was written at. Returns a description of the first difference, or "" when all is well.
std::string check_table(Db& db, const std::string& table, const NumberedLog& log) {
    const auto rows = db.query("SELECT file_device, file_inode, line, byte_offset, text FROM " +
                               table + " ORDER BY id");
    std::set<std::string> seen;
    for (const auto& row : rows) {
        if (!seen.insert(row[4]).second) {
            return fmt::format("'{}' is in the table twice ({} rows for {} lines)", row[4],
                               rows.size(), log.size());
        }
    }
    for (std::uint64_t seq = 1; seq <= log.size(); ++seq) {
        if (seq > rows.size()) {
            return fmt::format("{} rows for {} lines: line {} ('{}') and after are missing",
                               rows.size(), log.size(), seq, log.line(seq));
        }
        const auto& row = rows[seq - 1];
        if (row[4] != log.line(seq)) {
            return fmt::format("row {} (in commit order) is '{}', expected '{}'", seq, row[4],
                               log.line(seq));
        }
        const auto [file, offset] = log.where(seq);
        const FileId row_file{std::bit_cast<std::uint64_t>(std::stoll(row[0])),
                              std::bit_cast<std::uint64_t>(std::stoll(row[1]))};
        if (row_file != file || as_u64(row[3]) != offset) {
            return fmt::format("'{}' is recorded at {}@{}, it was written at {}@{}", row[4],
                               row_file, row[3], file, offset);
        }
    }
    if (rows.size() != log.size()) {
        return fmt::format("{} rows for {} lines", rows.size(), log.size());
    }
    return {};
}

/// A batch built by hand, as the tailer would deliver it: lines at the given offsets of one
/// file, numbered from `first_line`.
struct HandBatch {
    std::vector<std::string> texts;
    std::vector<std::string_view> records;
    std::vector<detail::LineRef> refs;
    Position end;

    HandBatch(FileId file, Fingerprint fingerprint, std::uint64_t first_line,
              std::uint64_t first_offset, std::vector<std::string> lines)
        : texts(std::move(lines)) {
        std::uint64_t offset = first_offset;
        std::uint64_t line = first_line;
        for (const auto& text : texts) {
            records.emplace_back(text);
            refs.push_back({text, line++, offset});
            offset += text.size() + 1;
        }
        end = Position{file, fingerprint, offset, line - 1};
    }
    Batch<std::string_view> batch() {
        return Batch<std::string_view>(records, refs.front().line, refs.back().line, end, 0,
                                       detail::BatchLines{refs, {}}, "hand.log");
    }
};

std::vector<std::string> texts_of(Db& db, const std::string& table) {
    std::vector<std::string> out;
    for (const auto& row : db.query("SELECT text FROM " + table + " ORDER BY id")) {
        out.push_back(row[0]);
    }
    return out;
}

}  // namespace

TEST_CASE(
    "postgres: a stored batch is not written again, an overlapping one only in part, and "
    "a file on a reused inode in full",
    "[postgres]") {
    if (auto why = PostgresServer::unavailable()) {
        SNAPTAIL_SKIP(*why);
    }
    PostgresServer server;
    Db db(server.conninfo());
    for (auto method : {postgres::WriteMethod::copy, postgres::WriteMethod::insert}) {
        const std::string table =
            method == postgres::WriteMethod::copy ? "lines_copy" : "lines_insert";
        auto options = postgres::raw_lines_options(server.conninfo(), table, table);
        options.method = method;
        postgres::Sink<std::string_view> sink(options, postgres::RawLineMapping{});
        const FileId file{7, 42};
        const Fingerprint fp{0x1234, 1024};

        HandBatch first(file, fp, 1, 0, {"a", "b", "c"});
        auto b1 = first.batch();
        sink(b1);
        sink(b1);  // a retry after a COMMIT whose answer was lost
        CHECK(texts_of(db, table) == std::vector<std::string>{"a", "b", "c"});
        CHECK(sink.stats().batches == 1);
        CHECK(sink.stats().skipped_batches == 1);

        // A re-delivery cut elsewhere: "b" and "c" again, then "d" and "e".
        HandBatch overlap(file, fp, 2, 2, {"b", "c", "d", "e"});
        auto b2 = overlap.batch();
        sink(b2);
        CHECK(texts_of(db, table) == std::vector<std::string>{"a", "b", "c", "d", "e"});
        CHECK(sink.stats().skipped_rows == 3 + 2);

        // Another file on the same inode (other first bytes): written from its first line,
        // although its offsets lie before the stored one.
        HandBatch reused(file, Fingerprint{0x9999, 1024}, 1, 0, {"x", "y"});
        auto b3 = reused.batch();
        sink(b3);
        CHECK(texts_of(db, table) == std::vector<std::string>{"a", "b", "c", "d", "e", "x", "y"});
        const auto stored = postgres::load_position(server.conninfo(), table);
        REQUIRE(stored);
        CHECK(*stored == reused.end);
    }
}

TEST_CASE("postgres: load_position gives the latest write of a stream, load_positions one per file",
          "[postgres]") {
    if (auto why = PostgresServer::unavailable()) {
        SNAPTAIL_SKIP(*why);
    }
    PostgresServer server;
    CHECK_FALSE(postgres::load_position(server.conninfo(), "s"));  // no positions table yet
    postgres::Sink<std::string_view> one(postgres::raw_lines_options(server.conninfo(), "t", "s"),
                                         postgres::RawLineMapping{});
    postgres::Sink<std::string_view> other(
        postgres::raw_lines_options(server.conninfo(), "t", "other"), postgres::RawLineMapping{});
    HandBatch a1(FileId{1, 10}, Fingerprint{1, 2}, 1, 0, {"a1"});
    HandBatch b1(FileId{1, 11}, Fingerprint{2, 2}, 1, 0, {"b1"});
    HandBatch a2(FileId{1, 10}, Fingerprint{1, 2}, 2, 3, {"a2"});
    HandBatch o1(FileId{1, 12}, Fingerprint{3, 2}, 1, 0, {"o1"});
    for (auto* hand : {&a1, &b1, &a2}) {
        auto batch = hand->batch();
        one(batch);
    }
    auto batch = o1.batch();
    other(batch);
    const auto latest = postgres::load_position(server.conninfo(), "s");
    REQUIRE(latest);
    CHECK(*latest == a2.end);
    const auto all = postgres::load_positions(server.conninfo(), "s");
    REQUIRE(all.size() == 2);
    CHECK(all[0] == b1.end);  // oldest write first
    CHECK(all[1] == a2.end);
    CHECK(postgres::load_positions(server.conninfo(), "other") == std::vector<Position>{o1.end});
    CHECK(postgres::load_positions(server.conninfo(), "none").empty());
}

TEST_CASE(
    "postgres: a record the mapping throws for is reported with its line number, the rest "
    "of its batch is written",
    "[postgres]") {
    if (auto why = PostgresServer::unavailable()) {
        SNAPTAIL_SKIP(*why);
    }
    PostgresServer server;
    Db db(server.conninfo());
    for (auto method : {postgres::WriteMethod::copy, postgres::WriteMethod::insert}) {
        const std::string table = method == postgres::WriteMethod::copy ? "copied" : "inserted";
        {
            INFO("WriteMethod " << table);
            TempDir dir;
            const auto path = dir / "app.log";
            // Line 3 makes the mapping throw; line 5 is not UTF-8 and line 7 holds a NUL byte,
            // which PostgreSQL text cannot hold; tabs, backslashes and CRs are escaped.
            const std::string before_bad = "one\ntwo\tand\\three\n";
            append(path, before_bad + "BAD line\nfour\r\nbad \xff utf-8\nsix\n" +
                             std::string("nul\0byte\n", 9) + "eight\n");
            auto options = postgres::raw_lines_options(server.conninfo(), table, table);
            options.method = method;
            ErrorLog errors;
            options.on_error = errors.handler();
            postgres::Sink<std::string_view> sink(
                options, [](std::string_view line, const RecordInfo& at, postgres::Row& row) {
                    row.add(std::bit_cast<std::int64_t>(at.file.device))
                        .add(std::bit_cast<std::int64_t>(at.file.inode))
                        .add(at.line)
                        .add(at.offset);
                    if (line.starts_with("BAD")) {
                        throw std::runtime_error("no mapping for BAD lines");
                    }
                    row.add(line);
                });
            auto tail = quick_options(path);
            tail.idle_exit = 300ms;
            tail.strip_cr = false;
            BatchingTailer tailer(tail, RawLineParser{}, sink);
            tailer.run(std::stop_token{});
            CHECK(texts_of(db, table) ==
                  std::vector<std::string>{"one", "two\tand\\three", "four\r", "six", "eight"});
            const auto reported = errors.of(ErrorKind::parse);
            REQUIRE(reported.size() == 3);
            CHECK(reported[0].line == 3);
            CHECK(reported[0].offset == before_bad.size());
            CHECK_THAT(reported[0].message, has_substring("no mapping for BAD lines"));
            CHECK(reported[0].path == path.string());
            CHECK(reported[1].line == 5);
            CHECK_THAT(reported[1].message, has_substring("not valid UTF-8"));
            CHECK(reported[2].line == 7);
            CHECK_THAT(reported[2].message, has_substring("NUL"));
            CHECK(sink.stats().mapping_errors == 3);
            CHECK(sink.stats().rows == 5);
            // The position covers the whole file: nothing is written again on resume.
            const auto stored = postgres::load_position(server.conninfo(), table);
            REQUIRE(stored);
            CHECK(stored->offset == fs::file_size(path));
            CHECK(stored->line == 8);
        }
    }
}

#ifdef SNAPTAIL_PG_FOLLOW_PATH

TEST_CASE(
    "postgres: the writing process killed with SIGKILL 30 times while the log is written and "
    "rotated: every line exactly once, in order",
    "[postgres][kill]") {
    if (auto why = PostgresServer::unavailable()) {
        SNAPTAIL_SKIP(*why);
    }
    const std::uint64_t seed = sink_test_seed();
    INFO("SNAPTAIL_SINK_SEED=" << seed);
    std::mt19937_64 rng(seed);
    auto between = [&rng](int low, int high) {
        return std::uniform_int_distribution<int>(low, high)(rng);
    };
    PostgresServer server;
    Db db(server.conninfo());
    TempDir dir;
    NumberedLog log(dir / "app.log", seed);
    const std::string table = "lines";
    auto driver = [&](int idle_exit_ms) {
        return Child({std::string(pg_follow), server.conninfo(), table, "app", log.path().string(),
                      std::to_string(between(1, 25)), std::to_string(idle_exit_ms)},
                     dir / "driver.log");
    };
    log.append(50);
    // The table exists once the first driver has connected.
    constexpr int kills = 30;
    int rotations = 0;
    for (int k = 0; k < kills; ++k) {
        Child child = driver(0);
        const auto until =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(between(30, 300));
        while (std::chrono::steady_clock::now() < until) {
            log.append(static_cast<std::size_t>(between(1, 120)));
            // Rotate only once the driver has reached the current file, so that no file is
            // rotated away twice before it is read (a documented limit of following by name).
            if (between(1, 100) <= 8 &&
                db.query("SELECT to_regclass('lines') IS NOT NULL")[0][0] == "t" &&
                db.count(table) > log.lines_before_current()) {
                log.rotate();
                ++rotations;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(between(0, 15)));
        }
        child.signal(SIGKILL);
        const int status = child.wait();
        if (status != 128 + SIGKILL) {  // it ended before the kill: say how
            FAIL_CHECK("run " << k << " exited with " << status << " before it was killed:\n"
                              << tail_of(dir / "driver.log"));
        }
    }
    Child last = driver(500);
    const int last_status = last.wait();
    INFO("the last driver's exit status: " << last_status);
    const std::string driver_log = slurp_file(dir / "driver.log");
    INFO("the drivers' output, last 4000 bytes:\n"
         << driver_log.substr(driver_log.size() > 4000 ? driver_log.size() - 4000 : 0));
    if (std::getenv("SNAPTAIL_SINK_VERBOSE")) {
        const std::string server_log = server.log();
        std::size_t open_transactions = 0;
        for (auto at = server_log.find("open transaction"); at != server_log.npos;
             at = server_log.find("open transaction", at + 1)) {
            ++open_transactions;
        }
        fmt::print("{}rotations={} lines={} kills in a transaction={}\n", driver_log, rotations,
                   log.size(), open_transactions);
    }
    CHECK(last_status == 0);
    CHECK(rotations > 0);
    CHECK(check_table(db, table, log) == "");
    // The stored position is the end of the last file.
    const auto stored = postgres::load_position(server.conninfo(), "app");
    REQUIRE(stored);
    CHECK(stored->offset == fs::file_size(log.path()));
}

#endif

#if defined(SNAPTAIL_ORDER_STATS_PATH) && defined(SNAPTAIL_GEN_ORDERS_PATH)

TEST_CASE(
    "postgres: order_stats --postgres killed with SIGKILL 8 times while gen_orders writes: "
    "every order exactly once, in order",
    "[postgres][kill][order_stats]") {
    if (auto why = PostgresServer::unavailable()) {
        SNAPTAIL_SKIP(*why);
    }
    const std::uint64_t seed = sink_test_seed();
    INFO("SNAPTAIL_SINK_SEED=" << seed);
    std::mt19937_64 rng(seed);
    PostgresServer server;
    TempDir dir;
    const auto path = dir / "orders.log";
    Child writer({SNAPTAIL_GEN_ORDERS_PATH, "--rate", "5000", "--seconds", "2", "--seed",
                  std::to_string(seed % 1000), path.string()},
                 dir / "gen_orders.log");
    auto order_stats = [&](std::vector<std::string> extra) {
        std::vector<std::string> args{
            SNAPTAIL_ORDER_STATS_PATH, "--quiet", "--linger-ms", "5", "--postgres",
            server.conninfo()};
        args.insert(args.end(), extra.begin(), extra.end());
        args.push_back(path.string());
        return Child(std::move(args), dir / "order_stats.log");
    };
    for (int k = 0; k < 8; ++k) {
        Child child = order_stats({});
        std::this_thread::sleep_for(
            std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 300)(rng)));
        child.signal(SIGKILL);
        const int status = child.wait();
        if (status != 128 + SIGKILL) {  // it ended before the kill: say how
            FAIL_CHECK("run " << k << " exited with " << status << " before it was killed:\n"
                              << tail_of(dir / "order_stats.log"));
        }
    }
    REQUIRE(writer.wait() == 0);
    Child last = order_stats({"--json", "--idle-exit-ms", "500"});
    const int last_status = last.wait();
    INFO("order_stats' output, last 4000 bytes:\n" << tail_of(dir / "order_stats.log"));
    REQUIRE(last_status == 0);
    // Each line of the log, by seq and offset, against the table in commit order.
    const std::string content = slurp_file(path);
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    Db db(server.conninfo());
    const auto rows =
        db.query("SELECT seq, byte_offset, file_device, file_inode, line FROM orders ORDER BY id");
    std::size_t offset = 0;
    std::uint64_t line = 0;
    std::size_t mismatches = 0;
    std::string first_mismatch;
    while (offset < content.size()) {
        const std::size_t end = content.find('\n', offset);
        if (end == std::string::npos) {
            FAIL("the log ends in an unterminated line");
        }
        ++line;
        const std::string seq =
            content.substr(offset + 7, content.find(',', offset) - offset - 7);  // {"seq":N,
        const std::vector<std::string> expected{
            seq, std::to_string(offset), std::to_string(static_cast<std::int64_t>(st.st_dev)),
            std::to_string(static_cast<std::int64_t>(st.st_ino)), std::to_string(line)};
        if (line > rows.size() || rows[line - 1] != expected) {
            if (mismatches++ == 0) {
                first_mismatch = fmt::format("line {} (seq {}): row {}", line, seq,
                                             line > rows.size() ? "missing" : rows[line - 1][0]);
            }
        }
        offset = end + 1;
    }
    CHECK(first_mismatch == "");
    CHECK(mismatches == 0);
    CHECK(rows.size() == line);
    CHECK(line >= 5000);
}

#endif

TEST_CASE("postgres: the server restarted mid-run: every line exactly once, in order",
          "[postgres][restart]") {
    if (auto why = PostgresServer::unavailable()) {
        SNAPTAIL_SKIP(*why);
    }
    PostgresServer server;
    TempDir dir;
    NumberedLog log(dir / "app.log");
    auto tail = quick_options(log.path());
    tail.max_batch_lines = 20;
    tail.sink_retry_initial = 20ms;
    tail.sink_retry_max = 200ms;
    postgres::Sink<std::string_view> sink(
        postgres::raw_lines_options(server.conninfo(), "lines", "app"), postgres::RawLineMapping{});
    ErrorLog errors;
    BatchingTailer tailer(tail, RawLineParser{}, sink, errors.handler());
    tailer.start();
    Db before(server.conninfo());
    log.append(100);
    REQUIRE(wait_until([&] {
        return before.query("SELECT to_regclass('lines') IS NOT NULL")[0][0] == "t" &&
               before.count("lines") == 100;
    }));
    // Down while lines keep coming: the sink fails, the tailer retries, the sink reconnects.
    server.stop();
    for (int i = 0; i < 10; ++i) {
        log.append(20);
        std::this_thread::sleep_for(20ms);
    }
    REQUIRE(errors.wait_for(ErrorKind::sink));
    server.start();
    for (int i = 0; i < 10; ++i) {
        log.append(20);
        std::this_thread::sleep_for(10ms);
    }
    Db db(server.conninfo());
    REQUIRE(wait_until([&] { return db.count("lines") >= log.size(); }, 60s));
    tailer.stop();
    CHECK(check_table(db, "lines", log) == "");
    CHECK(sink.stats().failures >= 1);
    CHECK(sink.stats().connects >= 2);
    CHECK(sink.stats().rows == log.size());
}
