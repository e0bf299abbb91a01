// BatchingTailer against a model: random sequences of appends, partial lines, rotations,
// truncations, deletions, sink pauses and failures, rejected lines, restarts and crashes, each
// checked for content, order, no loss, and duplicates only where a crash allows them (at most
// the one batch it interrupted). See tailer_model.hpp for how the model stays exact.
//
// Replay a failure with the line it prints, e.g.
//   SNAPTAIL_MODEL_REPLAY='17: lines(n=2) crash(n=3,after=1)' ./snaptail_tests '[model]'
//   SNAPTAIL_MODEL_SEED=17 ./snaptail_tests '[model]'       (the whole generated sequence)
// and soak with SNAPTAIL_MODEL_SEQUENCES=0 (until stopped) and SNAPTAIL_MODEL_FIRST_SEED.
#include "tailer_model.hpp"
#include "snaptail_catch.hpp"
#include "tailer_test_support.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

using namespace snaptail;
using namespace snaptail::test;
using namespace snaptail::test::model;

namespace {

// Conditions are met in milliseconds; this only bounds how long a broken tailer is waited for.
constexpr std::chrono::milliseconds model_deadline{10'000};
constexpr std::chrono::seconds shrink_budget{90};
constexpr std::size_t reported_in_full = 5;

std::string replay_line(std::uint64_t seed, const std::vector<Op>& ops) {
    return fmt::format("SNAPTAIL_MODEL_REPLAY='{}: {}' ./snaptail_tests '[model]'", seed,
                       to_string(ops));
}

// Shrinks a failing sequence and describes it with the commands that replay it.
std::string failure_report(const fs::path& dir, std::uint64_t seed, const Config& config,
                           const std::vector<Op>& ops, const std::string& failure, bool shrink_it) {
    std::string report = fmt::format(
        "model sequence failed\n  seed:     {}\n  options:  {}\n  sequence ({} ops): {}\n"
        "  failure:  {}\n",
        seed, describe(config), ops.size(), to_string(ops), failure);
    if (shrink_it && !ops.empty()) {
        const auto start = clock::now();
        const Shrunk shrunk = shrink(dir, config, ops, failure, model_deadline, shrink_budget);
        report += fmt::format("  shrunk ({} ops, {} runs, {:.1f} s): {}\n  its failure: {}\n",
                              shrunk.ops.size(), shrunk.runs,
                              std::chrono::duration<double>(clock::now() - start).count(),
                              to_string(shrunk.ops), shrunk.failure);
        report += fmt::format("  replay:   {}\n", replay_line(seed, shrunk.ops));
    }
    report += fmt::format(
        "  replay the whole sequence: SNAPTAIL_MODEL_SEED={} ./snaptail_tests "
        "'[model]'\n",
        seed);
    std::fputs(report.c_str(), stderr);
    return report;
}

double seconds_since(clock::time_point start) {
    return std::chrono::duration<double>(clock::now() - start).count();
}

}  // namespace

TEST_CASE("model: random operation sequences deliver what the model says", "[tailer][model]") {
    const Settings settings = settings_from_environment();
    TempDir dir;

    if (settings.replay_ops) {
        const std::uint64_t seed = *settings.replay_seed;
        const Config config = config_for(seed);
        const auto failure = run_sequence(dir.path(), config, *settings.replay_ops, model_deadline);
        if (failure) {
            FAIL(failure_report(dir.path(), seed, config, *settings.replay_ops, *failure, true));
        }
        fmt::print("model: replayed seed {} ({} ops): passed\n", seed, settings.replay_ops->size());
        return;
    }

    if (settings.unbounded) {
        fmt::print("model: soak from seed {} on {} threads until stopped\n", settings.first_seed,
                   settings.jobs);
        std::fflush(stdout);
    }
    const auto start = clock::now();
    const Summary summary = run_seeds(settings, model_deadline, [&](const Summary& so_far) {
        fmt::print("model: seeds {}..{}: {} sequences, {} failed, {:.0f} s\n", settings.first_seed,
                   so_far.last_seed, so_far.sequences, so_far.failed.size(), seconds_since(start));
        std::fflush(stdout);
    });
    fmt::print(
        "model: seeds {}..{}{}: {} sequences ({} operations) on {} threads, {} failed, "
        "{:.1f} s\n",
        settings.first_seed, summary.last_seed,
        settings.excluded.empty() ? "" : fmt::format(" without {}", settings.excluded_text),
        summary.sequences, summary.operations, settings.jobs, summary.failed.size(),
        seconds_since(start));
    std::fflush(stdout);
    if (!settings.unbounded) {
        CHECK(summary.sequences == settings.sequences);  // every sequence ran to its end
    }
    CHECK(summary.failed.empty());
    for (std::size_t i = 0; i < summary.failed.size(); ++i) {
        const auto& f = summary.failed[i];
        if (i < reported_in_full) {
            FAIL_CHECK(
                failure_report(dir.path(), f.seed, config_for(f.seed), f.ops, f.failure, i == 0));
        } else {
            FAIL_CHECK(fmt::format("seed {}: {}", f.seed, f.failure));
        }
    }
    if (!summary.failed.empty()) {
        std::vector<std::uint64_t> seeds;
        for (const auto& f : summary.failed) {
            seeds.push_back(f.seed);
        }
        FAIL(fmt::format("{} sequence(s) failed, seeds {}", seeds.size(), fmt::join(seeds, ", ")));
    }
}

TEST_CASE("model: operations print as text that parses back to them", "[tailer][model]") {
    for (std::uint64_t seed = 1; seed <= 300; ++seed) {
        const Config config = config_for(seed);
        const auto ops = generate(seed, config);
        REQUIRE(ops.size() >= 5);
        REQUIRE(ops.size() <= 16);
        CHECK(parse_ops(to_string(ops)) == ops);
        CHECK(generate(seed, config) == ops);  // a seed means one sequence
    }
    CHECK(parse_ops("  lines(n=3,bad=5,writes=2,pad=10)  crash(n=4,after=1) delete ") ==
          std::vector<Op>{Op{OpKind::lines, 3, 5, 2, 10, false},
                          Op{OpKind::crash, 4, 0, 1, 0, true}, Op{OpKind::remove}});
    CHECK_THROWS_AS(parse_ops("lines(n=x)"), std::invalid_argument);
    CHECK_THROWS_AS(parse_ops("fly"), std::invalid_argument);
}

TEST_CASE("model: the model frames lines as the tailer documents", "[tailer][model]") {
    Model model;
    model.create(FileId{1, 1});
    model.append("a\nb");
    CHECK(model.good().size() == 1);
    CHECK(model.partial() == 1);
    model.append("c\nd!bad\nrest");
    model.retire();  // a rotated or deleted file's unterminated line is a line
    REQUIRE(model.all().size() == 4);
    CHECK(model.all()[1].text == "bc");
    CHECK(model.all()[2].bad);
    CHECK(model.all()[2].line == 3);
    CHECK(model.all()[2].offset == 5);
    CHECK(model.all()[3].text == "rest");
    model.create(FileId{1, 2});
    model.append("x\n");
    CHECK(model.all().back().line == 1);  // numbering restarts in a new file
    CHECK(model.bad_before(model.good()[3]) == 1);
}

// --- sequences the random test found, kept with fixed options ------------------------------

namespace {

void check_sequence(std::string_view ops_text, const Config& config) {
    const auto ops = parse_ops(ops_text);
    TempDir dir;
    INFO("sequence: " << ops_text);
    INFO("options: " << describe(config));
    const auto failure = run_sequence(dir.path(), config, ops, model_deadline);
    if (failure) {
        FAIL_CHECK(*failure);
    }
}

Config small_batches() {
    Config config;
    config.max_batch_lines = 2;
    return config;
}

}  // namespace

TEST_CASE("model: a clean stop while the sink fails leaves the batch for the restart",
          "[tailer][model]") {
    // The position must stay before the batch the sink never accepted: the README promises a
    // clean restart loses no line.
    check_sequence("lines(n=3) stop-failing(n=6) lines(n=2)", small_batches());
    check_sequence("partial stop-failing(n=3,bad=1)", small_batches());
}

TEST_CASE("model: a clean restart after copy-and-truncate resumes in the same file",
          "[tailer][model]") {
    // After the truncation the committed fingerprint must be that of the new (empty) start of
    // the file, or the restart does not recognise its own file and reports a gap.
    check_sequence("lines(n=2) truncate restart(n=1)", Config{});
}

TEST_CASE("model: a truncated file rotated while stopped is found among the rotated files",
          "[tailer][model]") {
    // Same cause: the rotated file is not recognised, and the lines written to it before the
    // rotation are lost.
    check_sequence("lines(n=2) truncate rotate-stopped(n=2)", Config{});
}

TEST_CASE("model: a crash after copy-and-truncate resumes at the start of the new content",
          "[tailer][model]") {
    // The commit made when the truncation is seen must not pair the old offset with a
    // fingerprint of the (now empty) file: a restart from it would skip into the new content.
    check_sequence("partial truncate crash(n=2)", small_batches());
    check_sequence("lines(n=2) partial truncate crash(n=5,after=1)", small_batches());
}

TEST_CASE("model: a crash as a copy-and-truncate is reported does not skip into the new content",
          "[tailer][model]") {
    // Between the commit of the old content's end and the commit of the new start, the
    // checkpoint pairs the old offset with a fingerprint of 0 bytes (taken from the already
    // truncated file), which matches any content: a restart from it after new lines were
    // written resumes in the middle of them.
    check_sequence("partial truncate-crash(n=2)", Config{});
    check_sequence("lines(n=2) partial truncate-crash(n=6,pad=10)", small_batches());
}
