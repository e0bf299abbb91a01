// snaptail/sinks/jetstream.hpp: a sink that publishes each record to a NATS JetStream subject,
// with a message id JetStream uses to drop what a crash or a retry sends twice.
//
// Needs the NATS C client (Debian: libnats-dev; pkg-config libnats). With CMake, link
// `snaptail::jetstream`, which snaptail creates when it finds the client. Not included by
// <snaptail/snaptail.hpp>.
//
//     snaptail::jetstream::Options js;
//     js.url = "nats://10.0.0.1:4222,nats://10.0.0.2:4222";
//     js.subject = "logs.web1";
//     snaptail::jetstream::Sink<std::string_view> sink(js, snaptail::jetstream::RawLinePayload{});
//     snaptail::BatchingTailer tailer(tail_options, snaptail::RawLineParser{}, sink);
//
// Each record is published asynchronously (at most Options::max_in_flight awaiting their
// acknowledgement) with the header Nats-Msg-Id = message_id(file, offset, payload); the batch
// counts as delivered only once JetStream has acknowledged every message, and a batch with a
// failed or unanswered publish throws, so the tailer sends all of it again. The stream's
// duplicate window (nats stream add --dupe-window, 2 minutes by default) drops the messages it
// already stored, so a re-sent batch, or the batch a crash re-delivers from the checkpoint,
// lands once, provided it comes within the window.
#pragma once

#include <snaptail/batch.hpp>
#include <snaptail/error.hpp>
#include <snaptail/position.hpp>
#include <snaptail/sinks/record_info.hpp>

#include <fmt/format.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace snaptail::jetstream {

/// A failed connection, publish or acknowledgement; the tailer retries the batch when a Sink
/// throws it.
class JetStreamError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// Where a Sink publishes. Plain data; checked by the Sink's constructor.
struct Options {
    /// The servers: one URL or several, comma-separated ("nats://a:4222,nats://b:4222").
    std::string url;
    /// The subject every record is published to; a stream must capture it.
    std::string subject;
    /// Publishes awaiting their acknowledgement at once; a publish beyond it waits.
    std::size_t max_in_flight{4096};
    /// How long a message may wait for its acknowledgement before its batch fails.
    std::chrono::milliseconds ack_timeout{5000};
    /// How long connecting may take.
    std::chrono::milliseconds connect_timeout{2000};
    /// The connection's name, as the server shows it.
    std::string name{"snaptail"};
    /// Receives each record the payload mapping threw for (kind ErrorKind::parse, with its line
    /// number and offset), once its batch is delivered; default: print_error.
    ErrorHandler on_error;
};

/// A Sink's counters.
struct SinkStats {
    std::uint64_t batches{0};         ///< Batches every message of which was acknowledged.
    std::uint64_t messages{0};        ///< Messages JetStream stored (acknowledged as new).
    std::uint64_t duplicates{0};      ///< Messages JetStream dropped as already stored (within
                                      ///< its duplicate window): re-sends after a retry or a crash.
    std::uint64_t mapping_errors{0};  ///< Records the payload mapping threw for (not published).
    std::uint64_t publish_errors{0};  ///< Publishes refused or unanswered (their batch failed).
    std::uint64_t failures{0};        ///< Batch attempts that threw (the tailer retries them).
    std::uint64_t connects{0};        ///< Connections made, the first included.
};

/// The Nats-Msg-Id of a record: "<device>-<inode>-<offset>-<hash>" in hex, where the hash is
/// FNV-1a of the payload. File identity and offset name the record; the hash keeps a new file
/// on a reused inode from being taken for the old one within the duplicate window. The same
/// record always gets the same id, however batches are cut. Allocates the string.
inline std::string message_id(const RecordInfo& at, std::string_view payload) {
    return fmt::format("{:x}-{:x}-{:x}-{:016x}", at.file.device, at.file.inode, at.offset,
                       fingerprint_hash(payload));
}

namespace detail {

struct OptionsDeleter {
    void operator()(natsOptions* o) const noexcept { natsOptions_Destroy(o); }
};
struct ConnectionDeleter {
    void operator()(natsConnection* c) const noexcept { natsConnection_Destroy(c); }
};
struct ContextDeleter {
    void operator()(jsCtx* js) const noexcept { jsCtx_Destroy(js); }
};
using OptionsPtr = std::unique_ptr<natsOptions, OptionsDeleter>;
using ConnectionPtr = std::unique_ptr<natsConnection, ConnectionDeleter>;
using ContextPtr = std::unique_ptr<jsCtx, ContextDeleter>;

inline std::string describe(natsStatus s) {
    const char* last = nats_GetLastError(nullptr);
    return last != nullptr && *last != '\0' ? std::string(last) : natsStatus_GetText(s);
}

inline void check(natsStatus s, std::string_view what) {
    if (s != NATS_OK) {
        throw JetStreamError(fmt::format("jetstream: {}: {}", what, describe(s)));
    }
}

/// What the acknowledgement callback (on the client's thread) tells the publishing thread.
struct Acks {
    std::atomic<std::uint64_t> stored{0};
    std::atomic<std::uint64_t> duplicates{0};
    std::atomic<std::uint64_t> errors{0};
    std::mutex mutex;
    std::string first_error;

    void reset() {
        stored = 0;
        duplicates = 0;
        errors = 0;
        std::lock_guard lock(mutex);
        first_error.clear();
    }
};

// Called by the NATS client's thread for every message published asynchronously.
inline void on_ack(jsCtx*, natsMsg* msg, jsPubAck* ack, jsPubAckErr* error, void* closure) {
    auto& acks = *static_cast<Acks*>(closure);
    if (ack != nullptr) {
        (ack->Duplicate ? acks.duplicates : acks.stored).fetch_add(1);
    } else if (error != nullptr) {
        acks.errors.fetch_add(1);
        std::lock_guard lock(acks.mutex);
        if (acks.first_error.empty()) {
            acks.first_error = fmt::format(
                "{} (error code {})",
                error->ErrText != nullptr ? error->ErrText : natsStatus_GetText(error->Err),
                static_cast<int>(error->ErrCode));
        }
    }
    natsMsg_Destroy(msg);
}

/// One connection and JetStream context; reconnection within a connection is the client's
/// (it retries without end); a connection it closed is replaced on the next batch.
class Session {
  public:
    explicit Session(const Options& options) : options_(options) {}
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    ~Session() { close(); }

    jsCtx* context(Acks& acks, std::atomic<std::uint64_t>& connects) {
        if (js_ && conn_ && natsConnection_Status(conn_.get()) != NATS_CONN_STATUS_CLOSED) {
            return js_.get();
        }
        close();
        natsOptions* raw_options = nullptr;
        check(natsOptions_Create(&raw_options), "create options");
        OptionsPtr opts(raw_options);
        std::vector<std::string> urls;
        std::string_view rest = options_.url;
        while (!rest.empty()) {
            const auto comma = rest.find(',');
            urls.emplace_back(rest.substr(0, comma));
            rest = comma == rest.npos ? std::string_view{} : rest.substr(comma + 1);
        }
        std::vector<const char*> servers;
        for (const auto& url : urls) {
            servers.push_back(url.c_str());
        }
        check(natsOptions_SetServers(opts.get(), servers.data(), static_cast<int>(servers.size())),
              "set the servers");
        check(natsOptions_SetName(opts.get(), options_.name.c_str()), "set the name");
        check(natsOptions_SetTimeout(opts.get(), options_.connect_timeout.count()),
              "set the timeout");
        check(natsOptions_SetMaxReconnect(opts.get(), -1), "set reconnects");
        check(natsOptions_SetReconnectWait(opts.get(), 100), "set the reconnect wait");
        natsConnection* raw_conn = nullptr;
        check(natsConnection_Connect(&raw_conn, opts.get()),
              fmt::format("connect to {}", options_.url));
        conn_.reset(raw_conn);
        jsOptions js_options;
        jsOptions_Init(&js_options);
        js_options.PublishAsync.MaxPending = static_cast<int64_t>(options_.max_in_flight);
        js_options.PublishAsync.AckHandler = on_ack;
        js_options.PublishAsync.AckHandlerClosure = &acks;
        js_options.PublishAsync.StallWait = options_.ack_timeout.count();
        jsCtx* raw_js = nullptr;
        check(natsConnection_JetStream(&raw_js, conn_.get(), &js_options), "JetStream context");
        js_.reset(raw_js);
        ++connects;
        return js_.get();
    }

    /// Forgets the messages still awaiting acknowledgement: their callbacks will not come,
    /// and a later batch is not charged with them.
    void drop_pending() noexcept {
        if (!js_) {
            return;
        }
        natsMsgList pending{};
        if (js_PublishAsyncGetPendingList(&pending, js_.get()) == NATS_OK) {
            natsMsgList_Destroy(&pending);
        }
    }

    void close() noexcept {
        js_.reset();
        conn_.reset();
    }

  private:
    const Options& options_;
    ConnectionPtr conn_;
    ContextPtr js_;
};

}  // namespace detail

/// A sink for BatchingTailer<Parser> whose records are R: publishes each record to
/// Options::subject (see the top of this header). Copies share one connection and one set of
/// counters. operator() blocks until every message of the batch is acknowledged and is not
/// thread-safe (the tailer calls it from its thread only); stats() is thread-safe.
template <class R>
class Sink {
  public:
    /// Writes a record's message body into `payload` (cleared before each call). May throw for
    /// a record it cannot encode: that record is reported with its line number and skipped.
    using Payload =
        std::function<void(const R& record, const RecordInfo& at, std::string& payload)>;

    /// Checks the options (throws std::invalid_argument naming the bad one). Does not connect:
    /// the first batch does. Allocates.
    Sink(Options options, Payload payload)
        : state_(std::make_shared<State>(std::move(options), std::move(payload))) {}

    /// Publishes every record of the batch and waits for all acknowledgements; throws
    /// JetStreamError if any publish fails or is not acknowledged within ack_timeout (the
    /// tailer then sends the whole batch again). Blocks.
    void operator()(Batch<R>& batch) { state_->publish(batch); }

    /// The counters. Thread-safe; never blocks.
    SinkStats stats() const noexcept {
        const auto& c = state_->counters;
        return SinkStats{c.batches.load(),        c.messages.load(),       c.duplicates.load(),
                         c.mapping_errors.load(), c.publish_errors.load(), c.failures.load(),
                         c.connects.load()};
    }

  private:
    struct Counters {
        std::atomic<std::uint64_t> batches{0}, messages{0}, duplicates{0}, mapping_errors{0},
            publish_errors{0}, failures{0}, connects{0};
    };

    struct State {
        State(Options o, Payload p)
            : options(std::move(o)), payload(std::move(p)), session(options) {
            auto reject = [](std::string_view name, std::string_view why) {
                throw std::invalid_argument(
                    fmt::format("snaptail::jetstream::Options::{}: {}", name, why));
            };
            if (options.url.empty()) {
                reject("url", "a server URL is required");
            }
            if (options.subject.empty()) {
                reject("subject", "a subject is required");
            }
            if (options.max_in_flight == 0) {
                reject("max_in_flight", "must be at least 1");
            }
            if (options.ack_timeout.count() <= 0) {
                reject("ack_timeout", "must be positive");
            }
            if (!payload) {
                reject("payload", "a payload mapping is required");
            }
            if (!options.on_error) {
                options.on_error = print_error;
            }
        }

        void publish(Batch<R>& batch) {
            errors.clear();
            try {
                publish_once(batch);
            } catch (...) {
                ++counters.failures;
                session.drop_pending();
                throw;
            }
            for (const Error& e : errors) {
                ++counters.mapping_errors;
                try {
                    options.on_error(e);
                } catch (...) {  // a failing handler must not fail a delivered batch
                }
            }
        }

        void publish_once(Batch<R>& batch) {
            jsCtx* js = session.context(acks, counters.connects);
            acks.reset();
            jsPubOptions publish_options;
            jsPubOptions_Init(&publish_options);
            publish_options.MaxWait = options.ack_timeout.count();
            std::uint64_t sent = 0;
            auto records = batch.records();
            for (std::size_t i = 0; i < records.size(); ++i) {
                const RecordInfo at = record_info(batch, i);
                body.clear();
                try {
                    payload(records[i], at, body);
                } catch (const std::exception& e) {
                    note_error(at, e.what());
                    continue;
                } catch (...) {
                    note_error(at, "the payload mapping threw a non-standard exception");
                    continue;
                }
                id = message_id(at, body);
                publish_options.MsgId = id.c_str();
                const natsStatus s =
                    js_PublishAsync(js, options.subject.c_str(), body.data(),
                                    static_cast<int>(body.size()), &publish_options);
                detail::check(s, fmt::format("publish to {}", options.subject));
                ++sent;
            }
            jsPubOptions complete_options;
            jsPubOptions_Init(&complete_options);
            // Each message times out on its own (MaxWait); this bounds the wait for the last.
            complete_options.MaxWait = options.ack_timeout.count() + 1000;
            const natsStatus done = js_PublishAsyncComplete(js, &complete_options);
            const std::uint64_t answered =
                acks.stored.load() + acks.duplicates.load() + acks.errors.load();
            if (acks.errors.load() != 0) {
                counters.publish_errors += acks.errors.load();
                std::lock_guard lock(acks.mutex);
                throw JetStreamError(
                    fmt::format("jetstream: {} of {} messages to {} were not stored: {}",
                                acks.errors.load(), sent, options.subject, acks.first_error));
            }
            if (done != NATS_OK || answered != sent) {
                counters.publish_errors += sent - std::min(sent, answered);
                throw JetStreamError(fmt::format(
                    "jetstream: {} of {} messages to {} were not acknowledged within {} ms ({})",
                    sent - std::min(sent, answered), sent, options.subject,
                    options.ack_timeout.count(), detail::describe(done)));
            }
            ++counters.batches;
            counters.messages += acks.stored.load();
            counters.duplicates += acks.duplicates.load();
        }

        void note_error(const RecordInfo& at, std::string_view what) {
            errors.push_back(Error{ErrorKind::parse,
                                   fmt::format("jetstream sink: record not published: {}", what),
                                   std::string(at.path), at.offset, at.line});
        }

        Options options;
        Payload payload;
        detail::Acks acks;
        detail::Session session;  // after acks: its context calls into acks until destroyed
        Counters counters;
        std::vector<Error> errors;
        std::string body;
        std::string id;
    };

    std::shared_ptr<State> state_;
};

/// The payload of a raw line (RawLineParser's std::string_view): its bytes.
struct RawLinePayload {
    void operator()(std::string_view line, const RecordInfo&, std::string& payload) const {
        payload.assign(line);
    }
};

}  // namespace snaptail::jetstream
