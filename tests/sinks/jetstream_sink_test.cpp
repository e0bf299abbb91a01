// snaptail::jetstream::Sink and `snaptail-follow --jetstream` against nats-server processes of
// the test's own: every line in the stream exactly once across SIGKILLs of the publisher (its
// re-sends dropped by the duplicate window, and counted), and across a kill of the stream
// leader of a three-node cluster with an R3 stream. SNAPTAIL_SINK_SEED=<n> replays a schedule.
#include "server_support.hpp"
#include "snaptail_catch.hpp"
#include "snaptail_skip.hpp"

#include <snaptail/batching_tailer.hpp>
#include <snaptail/sinks/jetstream.hpp>

#include <nats/nats.h>

#include <map>
#include <regex>
#include <set>

using namespace snaptail;
using namespace snaptail::test;

namespace {

#ifdef SNAPTAIL_FOLLOW_PATH
constexpr std::string_view follow_binary = SNAPTAIL_FOLLOW_PATH;
#endif

/// A message as stored in the stream.
struct Stored {
    std::string payload;
    std::string id;
};

/// The test's own client: creates streams and reads them back.
class Client {
  public:
    explicit Client(const std::string& url) {
        natsOptions* raw_options = nullptr;
        jetstream::detail::check(natsOptions_Create(&raw_options), "options");
        jetstream::detail::OptionsPtr options(raw_options);
        std::vector<std::string> urls;
        std::string_view rest = url;
        while (!rest.empty()) {
            const auto comma = rest.find(',');
            urls.emplace_back(rest.substr(0, comma));
            rest = comma == rest.npos ? std::string_view{} : rest.substr(comma + 1);
        }
        std::vector<const char*> servers;
        for (const auto& u : urls) {
            servers.push_back(u.c_str());
        }
        natsOptions_SetServers(options.get(), servers.data(), static_cast<int>(servers.size()));
        natsOptions_SetMaxReconnect(options.get(), -1);
        natsOptions_SetReconnectWait(options.get(), 100);
        natsConnection* raw = nullptr;
        jetstream::detail::check(natsConnection_Connect(&raw, options.get()), "connect");
        conn_.reset(raw);
        jsCtx* js = nullptr;
        jetstream::detail::check(natsConnection_JetStream(&js, conn_.get(), nullptr), "js");
        js_.reset(js);
    }
    ~Client() {
        js_.reset();
        conn_.reset();
    }

    /// Creates a file-backed stream on `subject`; retried while the cluster elects leaders.
    void add_stream(const std::string& name, const std::string& subject, int replicas) {
        jsStreamConfig config;
        jsStreamConfig_Init(&config);
        config.Name = name.c_str();
        const char* subjects[] = {subject.c_str()};
        config.Subjects = subjects;
        config.SubjectsLen = 1;
        config.Storage = js_FileStorage;
        config.Replicas = replicas;
        config.Duplicates = std::chrono::nanoseconds(std::chrono::minutes(10)).count();
        std::string last_error;
        const bool added = wait_until(
            [&] {
                jsStreamInfo* info = nullptr;
                jsErrCode code{};
                const natsStatus s = js_AddStream(&info, js_.get(), &config, nullptr, &code);
                jsStreamInfo_Destroy(info);
                last_error = jetstream::detail::describe(s);
                return s == NATS_OK;
            },
            60s);
        if (!added) {
            throw std::runtime_error("add stream " + name + ": " + last_error);
        }
    }

    /// Messages in the stream (0 while it cannot be asked).
    std::uint64_t count(const std::string& stream) {
        jsStreamInfo* info = nullptr;
        jsErrCode code{};
        if (js_GetStreamInfo(&info, js_.get(), stream.c_str(), nullptr, &code) != NATS_OK) {
            return 0;
        }
        const std::uint64_t n = info->State.Msgs;
        jsStreamInfo_Destroy(info);
        return n;
    }

    /// The name of the server leading the stream.
    std::string leader(const std::string& stream) {
        jsStreamInfo* info = nullptr;
        jsErrCode code{};
        std::string name;
        if (js_GetStreamInfo(&info, js_.get(), stream.c_str(), nullptr, &code) == NATS_OK &&
            info->Cluster != nullptr && info->Cluster->Leader != nullptr) {
            name = info->Cluster->Leader;
        }
        jsStreamInfo_Destroy(info);
        return name;
    }

    /// Every message of the stream, in stream order, read with an ordered consumer.
    std::vector<Stored> messages(const std::string& stream, const std::string& subject) {
        const std::uint64_t n = count(stream);
        jsSubOptions options;
        jsSubOptions_Init(&options);
        options.Stream = stream.c_str();
        options.Ordered = true;
        natsSubscription* raw = nullptr;
        jsErrCode code{};
        jetstream::detail::check(
            js_SubscribeSync(&raw, js_.get(), subject.c_str(), nullptr, &options, &code),
            "subscribe");
        std::unique_ptr<natsSubscription, void (*)(natsSubscription*)> sub(
            raw, natsSubscription_Destroy);
        std::vector<Stored> out;
        while (out.size() < n) {
            natsMsg* msg = nullptr;
            if (natsSubscription_NextMsg(&msg, sub.get(), 10000) != NATS_OK) {
                break;
            }
            const char* id = nullptr;
            natsMsgHeader_Get(msg, "Nats-Msg-Id", &id);
            out.push_back({std::string(natsMsg_GetData(msg),
                                       static_cast<std::size_t>(natsMsg_GetDataLength(msg))),
                           id != nullptr ? id : ""});
            natsMsg_Destroy(msg);
        }
        return out;
    }

  private:
    jetstream::detail::ConnectionPtr conn_;
    jetstream::detail::ContextPtr js_;
};

/// The id the sink gives line `seq` of `log`.
std::string expected_id(const NumberedLog& log, std::uint64_t seq) {
    const auto [file, offset] = log.where(seq);
    return jetstream::message_id(RecordInfo{file, seq, offset, {}}, log.line(seq));
}

/// "" if `stored` holds every line of `log` once, each with its message id (and, with
/// `in_order`, in file order); otherwise the first difference.
std::string check_stream(const std::vector<Stored>& stored, const NumberedLog& log, bool in_order) {
    std::map<std::string, std::uint64_t> seq_of;
    for (std::uint64_t seq = 1; seq <= log.size(); ++seq) {
        seq_of[log.line(seq)] = seq;
    }
    std::set<std::uint64_t> seen;
    for (std::size_t i = 0; i < stored.size(); ++i) {
        const auto it = seq_of.find(stored[i].payload);
        if (it == seq_of.end()) {
            return fmt::format("message {} '{}' is no line of the log", i + 1, stored[i].payload);
        }
        if (!seen.insert(it->second).second) {
            return fmt::format("'{}' is in the stream twice", stored[i].payload);
        }
        if (stored[i].id != expected_id(log, it->second)) {
            return fmt::format("'{}' has the id '{}', expected '{}'", stored[i].payload,
                               stored[i].id, expected_id(log, it->second));
        }
        if (in_order && it->second != i + 1) {
            return fmt::format("message {} is line {} ('{}')", i + 1, it->second,
                               stored[i].payload);
        }
    }
    for (std::uint64_t seq = 1; seq <= log.size(); ++seq) {
        if (!seen.contains(seq)) {
            return fmt::format("line {} ('{}') is missing ({} of {} lines in the stream)", seq,
                               log.line(seq), stored.size(), log.size());
        }
    }
    return {};
}

/// The duplicates snaptail-follow --show-batches reported, summed over its stderr.
std::uint64_t duplicates_reported(const std::string& log) {
    static const std::regex pattern(", ([0-9]+) duplicates");
    std::uint64_t sum = 0;
    for (auto it = std::sregex_iterator(log.begin(), log.end(), pattern);
         it != std::sregex_iterator(); ++it) {
        sum += std::stoull((*it)[1].str());
    }
    return sum;
}

}  // namespace

TEST_CASE(
    "jetstream: a batch sent twice is stored once, and a record the payload mapping throws for "
    "is reported with its line number",
    "[jetstream]") {
    if (auto why = NatsServer::unavailable()) {
        SNAPTAIL_SKIP(*why);
    }
    NatsServer server;
    Client client(server.url());
    client.add_stream("LOGS", "logs.app", 1);
    TempDir dir;
    const auto path = dir / "app.log";
    append(path, "one\ntwo\nBAD\nfour\n");
    jetstream::Options options;
    options.url = server.url();
    options.subject = "logs.app";
    ErrorLog errors;
    options.on_error = errors.handler();
    jetstream::Sink<std::string_view> sink(
        options, [](std::string_view line, const RecordInfo&, std::string& payload) {
            if (line == "BAD") {
                throw std::runtime_error("no payload for BAD");
            }
            payload.assign(line);
        });
    int calls = 0;
    auto tail = quick_options(path);
    tail.idle_exit = 300ms;
    BatchingTailer tailer(tail, RawLineParser{}, [&](Batch<std::string_view>& batch) {
        sink(batch);
        if (++calls == 1) {
            sink(batch);  // a re-send of the whole batch
        }
    });
    tailer.run(std::stop_token{});
    const auto stored = client.messages("LOGS", "logs.app");
    std::vector<std::string> payloads;
    for (const auto& m : stored) {
        payloads.push_back(m.payload);
    }
    CHECK(payloads == std::vector<std::string>{"one", "two", "four"});
    CHECK(sink.stats().messages == 3);
    CHECK(sink.stats().duplicates >= 3);
    const auto reported = errors.of(ErrorKind::parse);
    REQUIRE(reported.size() >= 1);
    CHECK(reported[0].line == 3);
    CHECK(reported[0].offset == 8);
    CHECK_THAT(reported[0].message, has_substring("no payload for BAD"));
}

TEST_CASE(
    "jetstream: a publish JetStream refuses fails the batch, which succeeds once a stream takes it",
    "[jetstream]") {
    if (auto why = NatsServer::unavailable()) {
        SNAPTAIL_SKIP(*why);
    }
    NatsServer server;
    jetstream::Options options;
    options.url = server.url();
    options.subject = "nobody.listens";  // no stream captures it: "no responders"
    options.ack_timeout = 300ms;
    jetstream::Sink<std::string_view> sink(options, jetstream::RawLinePayload{});
    std::vector<std::string_view> records{"a", "b"};
    std::vector<detail::LineRef> refs{{"a", 1, 0}, {"b", 2, 2}};
    Batch<std::string_view> batch(records, 1, 2, Position{FileId{1, 2}, {}, 4, 2}, 2,
                                  detail::BatchLines{refs, {}}, "x.log");
    CHECK_THROWS_AS(sink(batch), jetstream::JetStreamError);
    CHECK(sink.stats().failures == 1);
    CHECK(sink.stats().batches == 0);
    CHECK(sink.stats().publish_errors == 2);
    Client client(server.url());
    client.add_stream("LATE", "nobody.listens", 1);
    sink(batch);  // now it is captured
    CHECK(sink.stats().batches == 1);
    CHECK(client.count("LATE") == 2);
}

#ifdef SNAPTAIL_FOLLOW_PATH

TEST_CASE(
    "jetstream: snaptail-follow --jetstream killed with SIGKILL 30 times while the log is "
    "written and rotated: every line exactly once, in order, re-sends dropped and counted",
    "[jetstream][kill]") {
    if (auto why = NatsServer::unavailable()) {
        SNAPTAIL_SKIP(*why);
    }
    const std::uint64_t seed = sink_test_seed();
    INFO("SNAPTAIL_SINK_SEED=" << seed);
    std::mt19937_64 rng(seed);
    auto between = [&rng](int low, int high) {
        return std::uniform_int_distribution<int>(low, high)(rng);
    };
    NatsServer server;
    Client client(server.url());
    client.add_stream("LOGS", "logs.app", 1);
    TempDir dir;
    NumberedLog log(dir / "app.log", seed);
    const auto checkpoint = dir / "app.ck";
    auto follow = [&](std::vector<std::string> extra) {
        std::vector<std::string> args{std::string(follow_binary),
                                      "--jetstream",
                                      server.url(),
                                      "--subject",
                                      "logs.app",
                                      "--checkpoint",
                                      checkpoint.string(),
                                      "--batch-lines",
                                      std::to_string(between(1, 25)),
                                      "--linger-ms",
                                      "2",
                                      "--rotate-wait-ms",
                                      "100",
                                      "--poll-ms",
                                      "20",
                                      "--show-batches"};
        args.insert(args.end(), extra.begin(), extra.end());
        args.push_back(log.path().string());
        return Child(std::move(args), dir / "follow.log");
    };
    log.append(50);
    constexpr int kills = 30;
    int rotations = 0;
    for (int k = 0; k < kills; ++k) {
        // Once, a checkpoint from before the run is put back after the kill: the next run
        // sends again what this one sent, all of which the stream must drop.
        const bool rewind = k == kills / 2;
        std::optional<std::string> saved;
        if (rewind && fs::exists(checkpoint)) {
            saved = slurp_file(checkpoint);
        }
        const std::uint64_t stored_before = client.count("LOGS");
        Child child = follow({});
        const auto until =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(between(30, 300));
        while (std::chrono::steady_clock::now() < until ||
               (saved && client.count("LOGS") <= stored_before)) {
            log.append(static_cast<std::size_t>(between(1, 120)));
            if (!saved && between(1, 100) <= 8 &&
                client.count("LOGS") > log.lines_before_current()) {
                log.rotate();
                ++rotations;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(between(0, 15)));
        }
        child.signal(SIGKILL);
        const int status = child.wait();
        if (status != 128 + SIGKILL) {  // it ended before the kill: say how
            FAIL_CHECK("run " << k << " exited with " << status << " before it was killed:\n"
                              << tail_of(dir / "follow.log"));
        }
        if (saved) {
            std::ofstream(checkpoint, std::ios::binary | std::ios::trunc) << *saved;
        }
    }
    Child last = follow({"--idle-exit-ms", "500", "--stats"});
    const int last_status = last.wait();
    const std::string follow_log = slurp_file(dir / "follow.log");
    INFO("snaptail-follow's output, last 3000 bytes:\n"
         << follow_log.substr(follow_log.size() > 3000 ? follow_log.size() - 3000 : 0));
    REQUIRE(last_status == 0);
    CHECK(rotations > 0);
    const auto stored = client.messages("LOGS", "logs.app");
    CHECK(check_stream(stored, log, true) == "");
    // The re-sends the rewound checkpoint caused, at least, were dropped and counted.
    CHECK(duplicates_reported(follow_log) > 0);
    if (std::getenv("SNAPTAIL_SINK_VERBOSE")) {
        fmt::print("lines={} rotations={} duplicates={}\n", log.size(), rotations,
                   duplicates_reported(follow_log));
    }
}

TEST_CASE(
    "jetstream: a three-node cluster, an R3 stream, its leader killed and restarted "
    "mid-run: no line lost, none twice",
    "[jetstream][cluster]") {
    if (auto why = NatsServer::unavailable()) {
        SNAPTAIL_SKIP(*why);
    }
    const std::array<int, 3> routes{free_port(), free_port(), free_port()};
    std::vector<std::unique_ptr<NatsServer>> nodes;
    for (int i = 0; i < 3; ++i) {
        std::vector<int> others;
        for (int j = 0; j < 3; ++j) {
            if (j != i) {
                others.push_back(routes[static_cast<std::size_t>(j)]);
            }
        }
        nodes.push_back(std::make_unique<NatsServer>(NatsServer::Cluster{
            fmt::format("n{}", i), routes[static_cast<std::size_t>(i)], others}));
    }
    const std::string urls =
        fmt::format("{},{},{}", nodes[0]->url(), nodes[1]->url(), nodes[2]->url());
    Client client(urls);
    client.add_stream("LOGS", "logs.app", 3);
    TempDir dir;
    NumberedLog log(dir / "app.log");
    Child follow({std::string(follow_binary), "--jetstream", urls, "--subject", "logs.app",
                  "--checkpoint", (dir / "app.ck").string(), "--batch-lines", "50", "--linger-ms",
                  "5", "--show-batches", "--stats", log.path().string()},
                 dir / "follow.log");
    auto write_for = [&](std::chrono::milliseconds how_long) {
        const auto until = std::chrono::steady_clock::now() + how_long;
        while (std::chrono::steady_clock::now() < until) {
            log.append(40);
            std::this_thread::sleep_for(10ms);
        }
    };
    write_for(1000ms);
    REQUIRE(wait_until([&] { return client.count("LOGS") > 0; }));
    std::string leader;
    REQUIRE(wait_until([&] { return !(leader = client.leader("LOGS")).empty(); }));
    const auto index = static_cast<std::size_t>(leader.back() - '0');
    REQUIRE(index < 3);
    nodes[index]->kill();
    write_for(2000ms);
    nodes[index]->start();
    write_for(1000ms);
    REQUIRE(wait_until([&] { return client.count("LOGS") >= log.size(); }, 90s));
    follow.signal(SIGTERM);
    CHECK(follow.wait() == 0);
    const std::string follow_log = slurp_file(dir / "follow.log");
    INFO(follow_log.substr(follow_log.size() > 3000 ? follow_log.size() - 3000 : 0));
    CHECK(client.count("LOGS") == log.size());
    CHECK(check_stream(client.messages("LOGS", "logs.app"), log, false) == "");
    if (std::getenv("SNAPTAIL_SINK_VERBOSE")) {
        fmt::print("lines={} leader killed: {}\n{}\n", log.size(), leader,
                   follow_log.substr(follow_log.rfind('{')));
    }
}

#endif
