// Handing a batch to the user's sink: retries with backoff, giving up, and what is reported.
#pragma once

#include <snaptail/batch.hpp>
#include <snaptail/detail/reporter.hpp>
#include <snaptail/tail_options.hpp>
#include <snaptail/tailer_stats.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <stop_token>
#include <string>

namespace snaptail::detail {

/// Offers batches to the sink. Not thread-safe: the sink runs on the tailer's thread.
template <class R>
class Delivery {
  public:
    using Sink = std::function<void(Batch<R>&)>;

    Delivery(const TailOptions& options, Sink sink, TailerStats& totals, Reporter& reporter)
        : options_(options), sink_(std::move(sink)), totals_(totals), reporter_(reporter) {}

    bool has_sink() const noexcept { return static_cast<bool>(sink_); }

    /// Offers the batch to the sink until it accepts it (true), retrying with backoff (`sleep`
    /// waits a delay unless stop is requested). Gives up after sink_max_attempts (counted and
    /// reported; true: the position moves past it), or when `stop` is requested (false: the
    /// batch stays undelivered and uncommitted). `path` names the batch's file in reports.
    template <class Sleep>
    bool send(Batch<R>& batch, const std::string& path, const std::stop_token& stop,
              Sleep&& sleep) {
        auto delay = options_.sink_retry_initial;
        for (unsigned attempt = 1;; ++attempt) {
            std::string failure;
            try {
                sink_(batch);
                ++totals_.batches;
                totals_.records += batch.size();
                return true;
            } catch (const std::exception& e) {
                failure = e.what();
            } catch (...) {
                failure = "non-std exception";
            }
            ++totals_.sink_errors;
            reporter_.report(ErrorKind::sink,
                             fmt::format("sink threw on attempt {} for lines {}-{}: {}", attempt,
                                         batch.first_line(), batch.last_line(), failure),
                             path, batch.end_position().offset, batch.first_line());
            if (options_.sink_max_attempts != 0 && attempt >= options_.sink_max_attempts) {
                ++totals_.skipped_batches;
                totals_.skipped_records += batch.size();
                reporter_.report(
                    ErrorKind::sink_gave_up,
                    fmt::format("{} records of lines {}-{} (ending at byte {}) were skipped "
                                "after {} attempts (sink_max_attempts)",
                                batch.size(), batch.first_line(), batch.last_line(),
                                batch.end_position().offset, attempt),
                    path, batch.end_position().offset, batch.first_line());
                return true;
            }
            if (stop.stop_requested()) {
                report_undelivered(batch, path);
                return false;
            }
            sleep(delay);
            delay = std::min(delay * 2, options_.sink_retry_max);
        }
    }

    /// Reports a batch that stop left undelivered: the position stays before it.
    void report_undelivered(const Batch<R>& batch, const std::string& path) {
        reporter_.report(
            ErrorKind::undelivered,
            fmt::format(
                "{} records of lines {}-{} (ending at byte {}) were not delivered "
                "before stop; the position stays before them{}",
                batch.size(), batch.first_line(), batch.last_line(), batch.end_position().offset,
                options_.checkpoint_path ? ", so a restart from the checkpoint delivers them" : ""),
            path, batch.end_position().offset, batch.first_line());
    }

  private:
    const TailOptions& options_;
    Sink sink_;
    TailerStats& totals_;
    Reporter& reporter_;
};

}  // namespace snaptail::detail
