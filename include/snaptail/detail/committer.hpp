// When the delivered positions are written to the checkpoint: after every batch or at most once
// per commit_interval, always at stop, and never ahead of the sink.
#pragma once

#include <snaptail/checkpoint_state.hpp>
#include <snaptail/checkpoint_store.hpp>
#include <snaptail/detail/reporter.hpp>
#include <snaptail/tail_options.hpp>
#include <snaptail/tailer_stats.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <optional>
#include <string>

namespace snaptail::detail {

/// Saves what the follow policy says is delivered (`State`) to the checkpoint store. Not
/// thread-safe: the tailer's thread.
class Committer {
  public:
    using clock = std::chrono::steady_clock;
    /// The state to save now; nullopt when there is nothing to save (no file open yet).
    using State = std::function<std::optional<CheckpointState>()>;

    Committer(const TailOptions& options, TailerStats& totals, Reporter& reporter,
              std::string source)
        : options_(options), totals_(totals), reporter_(reporter), source_(std::move(source)) {
        if (options_.checkpoint_path) {
            store_.emplace(
                *options_.checkpoint_path, options_.checkpoint_sync_interval,
                CheckpointAccess{options_.checkpoint_mode, options_.checkpoint_trust_any_owner});
        }
    }

    /// The store, when a checkpoint is configured.
    CheckpointStore* store() noexcept { return store_ ? &*store_ : nullptr; }
    void set_state(State state) { state_ = std::move(state); }
    /// The state last written (or loaded as it was on disk).
    void assume_committed(CheckpointState state) { committed_ = std::move(state); }

    /// Saves the current state: after every batch, or at most once per commit_interval, and
    /// always when forced (stop, a new file). A failed write is reported and retried later.
    void commit(bool force) {
        if (!store_ || !state_) {
            return;
        }
        auto state = state_();
        if (!state) {
            return;
        }
        if (committed_ && *committed_ == *state) {
            pending_ = false;
            return;
        }
        const auto now = clock::now();
        if (!force && committed_ && now - last_commit_ < options_.commit_interval) {
            pending_ = true;
            return;
        }
        if (!force && failing_ && now < retry_at_) {
            pending_ = true;  // a failing disk is tried again with backoff, not in a loop
            return;
        }
        try {
            store_->save(*state);
            committed_ = std::move(state);
            ++totals_.commits;
            pending_ = false;
            failing_ = false;
            backoff_ = {};
        } catch (const std::exception& e) {
            ++totals_.checkpoint_errors;
            const auto& first = state->files.empty() ? FileCheckpoint{} : state->files.front();
            reporter_.report(ErrorKind::checkpoint, e.what(), source_, first.position.offset,
                             first.position.line);
            pending_ = true;
            failing_ = true;
            backoff_ = std::min(
                backoff_ == std::chrono::milliseconds{0} ? options_.poll_interval : backoff_ * 2,
                max_backoff);
            retry_at_ = now + backoff_;
        }
        last_commit_ = now;
    }

    /// A commit is waiting for commit_interval to pass.
    bool pending() const noexcept { return pending_; }
    /// When the waiting commit is due (after a failed write: when it is tried again).
    clock::time_point due() const noexcept {
        return failing_ ? std::max(retry_at_, last_commit_ + options_.commit_interval)
                        : last_commit_ + options_.commit_interval;
    }

    /// Makes the last save durable (stop). Reported when it fails.
    void sync() {
        if (!store_) {
            return;
        }
        try {
            store_->sync();
        } catch (const std::exception& e) {
            ++totals_.checkpoint_errors;
            reporter_.report(ErrorKind::checkpoint, e.what(), source_);
        }
    }

  private:
    const TailOptions& options_;
    TailerStats& totals_;
    Reporter& reporter_;
    std::string source_;  // names the followed path or file set in reports
    std::optional<CheckpointStore> store_;
    State state_;
    std::optional<CheckpointState> committed_;
    static constexpr std::chrono::milliseconds max_backoff{5000};

    clock::time_point last_commit_{};
    clock::time_point retry_at_{};
    std::chrono::milliseconds backoff_{0};
    bool pending_{false};
    bool failing_{false};  // the last write failed: retried at retry_at_
};

}  // namespace snaptail::detail
