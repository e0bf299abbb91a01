// The README's sink and metrics snippets, compiled so that they stay true (built where both
// client libraries are found; not meant to be run without the servers it names).
#include <snaptail/batching_tailer.hpp>
#include <snaptail/prometheus.hpp>
#include <snaptail/sinks/jetstream.hpp>
#include <snaptail/sinks/postgres.hpp>

#include <string>
#include <string_view>

namespace {

struct Order {
    std::int64_t seq;
    std::string coin;
    double px;
};

void postgres_snippet() {
    // --- README snippet: PostgreSQL ---
    auto pg = snaptail::postgres::raw_lines_options("host=db dbname=logs", "lines", "web1");
    snaptail::TailOptions options;
    options.path = "/var/log/app.log";
    if (auto stored = snaptail::postgres::load_position(pg.conninfo, pg.stream)) {
        options.start = snaptail::StartAt::position(*stored);  // no checkpoint file
    }
    snaptail::postgres::Sink<std::string_view> sink(pg, snaptail::postgres::RawLineMapping{});
    snaptail::BatchingTailer tailer(options, snaptail::RawLineParser{}, sink);
    // --- end ---
    tailer.start();

    snaptail::postgres::Options own = pg;
    // --- README snippet: a mapping ---
    snaptail::postgres::Sink<Order> orders(
        own, [](const Order& o, const snaptail::RecordInfo& at, snaptail::postgres::Row& row) {
            row.add(o.seq).add(o.coin).add(o.px).add(at.offset);
        });
    // --- end ---
    static_cast<void>(orders);
}

void jetstream_snippet(const snaptail::TailOptions& options) {
    // --- README snippet: JetStream ---
    snaptail::jetstream::Options js;
    js.url = "nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222";
    js.subject = "logs.web1";  // a stream must capture it
    snaptail::jetstream::Sink<std::string_view> sink(js, snaptail::jetstream::RawLinePayload{});
    snaptail::BatchingTailer tailer(options, snaptail::RawLineParser{}, sink);
    // --- end ---
    tailer.start();
}

void metrics_snippet(const snaptail::BatchingTailer<snaptail::RawLineParser>& tailer,
                     const snaptail::SwapBuffer<int>& buffer) {
    // --- README snippet: metrics ---
    std::string text;
    snaptail::write_prometheus(text, tailer.stats(), {{"log", "orders"}});
    snaptail::write_prometheus(text, buffer.stats(), {{"buffer", "events"}});  // a SwapBuffer
    snaptail::write_file_atomically("/var/lib/node_exporter/textfile/snaptail.prom", text);
    // --- end ---
}

}  // namespace

int main(int argc, char**) {
    if (argc > 1) {  // never without arguments: it needs the servers it names
        postgres_snippet();
        snaptail::TailOptions options;
        options.path = "/var/log/app.log";
        jetstream_snippet(options);
        snaptail::BatchingTailer tailer(options, snaptail::RawLineParser{},
                                        [](snaptail::Batch<std::string_view>&) {});
        snaptail::SwapBuffer<int> buffer;
        metrics_snippet(tailer, buffer);
    }
    return 0;
}
