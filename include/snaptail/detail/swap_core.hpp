// SwapBuffer's engine: the overflow policies, the waits of producers and consumer, and the
// hand-over of shards (detail/swap_shards.hpp). SwapBuffer is its documented face.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <mutex>
#include <optional>
#include <ranges>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <vector>

#include <snaptail/detail/spin_lock.hpp>
#include <snaptail/detail/swap_push.hpp>
#include <snaptail/detail/swap_shards.hpp>

namespace snaptail::detail {

// The counters of every shard, summed with every shard locked.
struct SwapCounts {
    std::uint64_t pushed = 0;
    std::uint64_t drained = 0;
    std::uint64_t rejected = 0;
    std::uint64_t dropped = 0;
    std::uint64_t drains = 0;
    std::uint64_t blocked_pushes = 0;
    std::size_t high_water_mark = 0;
};

// What the full buffer does with an item: SwapBuffer's OverflowPolicy.
enum class Overflow { block, reject, drop_oldest };

// The whole of a SwapBuffer but its documentation; see there for what each member promises.
template <class T, class Allocator>
class SwapCore {
  public:
    using Clock = std::chrono::steady_clock;
    using Shards = SwapShards<T, Allocator>;
    using Shard = typename Shards::Shard;
    using Pick = typename Shards::Pick;
    using AllLocked = typename Shards::AllLocked;
    using ShardLock = std::unique_lock<SpinLock>;
    using batch_type = std::vector<T, Allocator>;
    using weigher_type = std::function<std::size_t(const T&)>;

    static constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();

    // `capacity` is positive (SwapBuffer checks).
    SwapCore(std::size_t capacity, Overflow policy, const Allocator& alloc)
        : policy_(policy),
          bounded_(capacity != unbounded),
          shards_(capacity, bounded_, policy == Overflow::drop_oldest ? 1 : Shards::max_shards,
                  alloc) {}

    SwapCore(const SwapCore&) = delete;
    SwapCore& operator=(const SwapCore&) = delete;
    ~SwapCore() = default;

    // Before any other use.
    void set_weigher(weigher_type weigher) { weigher_ = std::move(weigher); }

    template <class U>
    bool push_one(U&& item, PushWait mode, Clock::time_point deadline) {
        const std::size_t w = weigh(item);  // user code, so outside the lock
        const std::size_t c = shards_.charge_of(w);
        Shard& shard = shards_.mine();
        bool appended = false;
        bool wake = false;
        {
            // The path of almost every push: open, and the shard's credit covers the item.
            std::lock_guard lock(shard.lock);
            if (!closed_.load(std::memory_order_relaxed) && shards_.covers(shard, c)) {
                wake = consumer_wants(shards_.append(shard, std::forward<U>(item), w, c));
                appended = true;
            }
        }
        if (!appended) {
            return push_slow(shard, std::forward<U>(item), w, mode, deadline);
        }
        if (wake) {
            wake_consumer();
        }
        return true;
    }

    template <pushable_range<T> R>
    std::size_t push_range(R&& range) {
        auto it = std::ranges::begin(range);
        const auto last = std::ranges::end(range);
        std::size_t accepted = 0;
        bool waited = false;
        WakeOnExit wake{*this};  // declared before the lock: wakes after it is released
        Shard& shard = shards_.mine();
        ShardLock lock(shard.lock);
        for (; it != last; ++it) {
            if (!offer_element<moves_elements_v<R>>(shard, lock, it, waited, wake.pending)) {
                break;
            }
            ++accepted;
        }
        if (it != last) {
            // The refused element was counted by offer; the rest were never offered.
            ++it;
            shard.rejected += static_cast<std::uint64_t>(std::ranges::distance(it, last));
        }
        return accepted;
    }

    void drain(batch_type& out) {
        out.clear();  // destroy the previous batch without holding up producers
        // Once closed, every shard is looked at (see wait_drain), so that draining until
        // empty after close() takes every accepted item.
        const Pick pick = shards_.pick(1, closed_.load());
        if (pick.oldest != nullptr && take(*pick.oldest, out)) {
            std::lock_guard lock(control_);
            space_cv_.notify_all();
        }
    }

    template <class Rep, class Period>
    bool wait_drain(batch_type& out, std::size_t min_items,
                    std::chrono::duration<Rep, Period> max_wait, std::stop_token stop) {
        out.clear();
        min_items = std::max<std::size_t>(min_items, 1);
        std::unique_lock lock(control_);
        std::size_t arm = min_items;
        for (;;) {
            // Armed before looking: a push that lands after its shard was looked at sees it
            // (see consumer_wants), so no wake-up is lost between the look and the wait.
            wake_at_.store(arm);
            const bool closed = closed_.load();
            const bool stopping = stop.stop_requested();
            // Once closed, every shard is locked in turn, so that a push that began before
            // close() (and will succeed) is waited for rather than missed.
            const Pick pick = shards_.pick(min_items, closed);
            Shard* chosen = pick.full;
            if (chosen == nullptr && pick.oldest != nullptr &&
                (closed || stopping || overflowed_.load() ||
                 Clock::now() >= deadline_after(pick.oldest_at, max_wait))) {
                chosen = pick.oldest;
            }
            if (chosen != nullptr) {
                wake_at_.store(no_waiter);
                if (take(*chosen, out)) {
                    space_cv_.notify_all();
                }
                if (!out.empty()) {
                    return true;
                }
                continue;
            }
            if (pick.oldest == nullptr && (closed || stopping)) {
                wake_at_.store(no_waiter);
                return false;
            }
            // Empty: the first item anywhere wakes. Otherwise a shard reaching min_items.
            const std::size_t wanted = pick.oldest == nullptr ? 1 : min_items;
            if (wanted != arm) {
                arm = wanted;
                continue;
            }
            const bool has_items = pick.oldest != nullptr;
            const auto woken = [&] {
                return wake_at_.load() == no_waiter || closed_.load() ||
                       (has_items && overflowed_.load());
            };
            const auto deadline =
                has_items ? deadline_after(pick.oldest_at, max_wait) : Clock::time_point::max();
            if (deadline == Clock::time_point::max()) {
                consumer_cv_.wait(lock, stop, woken);
            } else {
                consumer_cv_.wait_until(lock, stop, deadline, woken);
            }
        }
    }

    void close() {
        std::lock_guard lock(control_);
        closed_.store(true);
        // Notified under the lock: a woken thread may otherwise destroy the buffer while
        // this call still touches it.
        space_cv_.notify_all();
        consumer_cv_.notify_all();
    }

    bool is_closed() const noexcept { return closed_.load(); }

    std::size_t size() const {
        const AllLocked all(shards_);
        std::size_t n = 0;
        for (std::size_t i = 0; i < shards_.count(); ++i) {
            n += shards_[i].live();
        }
        return n;
    }

    std::size_t weight() const {
        const AllLocked all(shards_);
        return shards_.held_weight();
    }

    SwapCounts counts() const {
        const AllLocked all(shards_);
        SwapCounts s;
        for (std::size_t i = 0; i < shards_.count(); ++i) {
            const Shard& shard = shards_[i];
            s.pushed += shard.pushed;
            s.drained += shard.drained;
            s.rejected += shard.rejected;
            s.dropped += shard.dropped;
            s.drains += shard.drains;
            s.blocked_pushes += shard.blocked_pushes;
        }
        shards_.record_high_water(shards_.held_weight());
        s.high_water_mark = shards_.high_water();
        return s;
    }

    void reserve(std::size_t items) {
        const AllLocked all(shards_);
        for (std::size_t i = 0; i < shards_.count(); ++i) {
            shards_[i].items.reserve(shards_[i].head + items);
        }
    }

    Allocator get_allocator() const {
        std::lock_guard lock(shards_[0].lock);
        return shards_[0].items.get_allocator();
    }

  private:
    static constexpr std::size_t no_waiter = std::numeric_limits<std::size_t>::max();

    enum class Outcome { accepted, rejected, wait };

    // For a decision about the whole buffer from a push that holds its own shard's lock: that
    // lock released, then every shard locked in order; on exit the reverse. With one shard
    // the caller's lock is already all of them.
    class Exclusive {
      public:
        Exclusive(const Shards& shards, ShardLock& own) : own_(own) {
            if (shards.count() > 1) {
                own_.unlock();
                all_.emplace(shards);
            }
        }
        Exclusive(const Exclusive&) = delete;
        Exclusive& operator=(const Exclusive&) = delete;
        ~Exclusive() {
            if (all_) {
                all_.reset();
                own_.lock();
            }
        }

      private:
        ShardLock& own_;
        std::optional<AllLocked> all_;
    };

    // Wakes the waiting consumer, if a push asked to, once the shard lock is released (the
    // consumer holds control_ while it locks shards, so producers never lock the other way).
    struct WakeOnExit {
        explicit WakeOnExit(SwapCore& b) noexcept : buffer(b) {}
        WakeOnExit(const WakeOnExit&) = delete;
        WakeOnExit& operator=(const WakeOnExit&) = delete;
        ~WakeOnExit() {
            if (pending) {
                buffer.wake_consumer();
            }
        }

        SwapCore& buffer;
        bool pending = false;
    };

    std::size_t weigh(const T& item) const { return weigher_ ? weigher_(item) : 1; }

    // Whether the consumer waits for a shard of `live` items. A seq_cst load after the push
    // (and after its store to the shards' non-empty mask): it pairs with wait_drain's store
    // to wake_at_ before it looks at the shards, so no wake-up falls between the two.
    bool consumer_wants(std::size_t live) const noexcept { return live >= wake_at_.load(); }

    // Refills the shard's credit from the pool, or decides with every shard locked. Out of
    // line, so that push_one stays small enough to be inlined.
    template <class U>
    [[gnu::noinline]] bool push_slow(Shard& shard, U&& item, std::size_t w, PushWait mode,
                                     Clock::time_point deadline) {
        if (mode == PushWait::until_deadline && deadline == Clock::time_point::max()) {
            mode = PushWait::forever;
        }
        bool waited = false;
        WakeOnExit wake{*this};  // declared before the lock: wakes after it is released
        ShardLock lock(shard.lock);
        return offer(shard, lock, std::forward<U>(item), w, mode, deadline, waited, wake.pending);
    }

    // One element of push_range. Elements that are not references to T are materialised
    // once, to be weighed and then moved in.
    template <bool Move, class It>
    bool offer_element(Shard& shard, ShardLock& lock, It& it, bool& waited, bool& wake) {
        using Ref = std::iter_reference_t<It>;
        constexpr auto mode = PushWait::forever;
        if constexpr (std::is_reference_v<Ref> && std::is_same_v<std::remove_cvref_t<Ref>, T>) {
            const std::size_t w = weigh(*it);
            if constexpr (Move) {
                return offer(shard, lock, std::ranges::iter_move(it), w, mode, {}, waited, wake);
            } else {
                return offer(shard, lock, *it, w, mode, {}, waited, wake);
            }
        } else {
            T item = [&]() -> T {
                if constexpr (Move) {
                    return T(std::ranges::iter_move(it));
                } else {
                    return T(*it);
                }
            }();
            const std::size_t w = weigh(item);
            return offer(shard, lock, std::move(item), w, mode, {}, waited, wake);
        }
    }

    // Appends one item of weight `w` to `shard`, whose lock `lock` holds, applying the policy
    // if neither the shard's credit nor the pool covers it. `waited` makes a push_range count
    // as one blocked push however often it waits; `wake` asks for the consumer to be woken.
    template <class U>
    bool offer(Shard& shard, ShardLock& lock, U&& item, std::size_t w, PushWait mode,
               Clock::time_point deadline, bool& waited, bool& wake) {
        const std::size_t c = shards_.charge_of(w);
        for (;;) {
            if (closed_.load(std::memory_order_relaxed)) {
                ++shard.rejected;
                return false;
            }
            if (shards_.take_credit(shard, c)) {
                wake = consumer_wants(shards_.append(shard, std::forward<U>(item), w, c)) || wake;
                return true;
            }
            // Read before the buffer is found full: a drain after that changes it, and then
            // the wait below does not start.
            const std::uint64_t epoch = shards_.room_epoch();
            Outcome outcome = Outcome::rejected;
            if (shards_.count() > 1 && shards_.known_full(epoch, c)) {
                // Still full since the last look at every shard: a buffer that refuses items
                // at a high rate does not lock every shard for each of them.
                outcome = full(shard, mode, waited, wake);
            } else {
                const Exclusive all(shards_, lock);
                outcome = offer_exclusive(shard, std::forward<U>(item), w, c, mode, waited, wake);
            }
            if (outcome != Outcome::wait) {
                return outcome == Outcome::accepted;
            }
            lock.unlock();
            if (std::exchange(wake, false)) {
                wake_consumer();  // a full buffer is a ready batch: the consumer must drain
            }
            const bool in_time = wait_for_room(epoch, mode, deadline);
            lock.lock();
            if (!in_time) {
                mode = PushWait::never;  // one last look, then reject
            }
        }
    }

    // The exact decision, with every shard locked: all credit is back in the pool, which is
    // then exactly the room left.
    template <class U>
    Outcome offer_exclusive(Shard& shard, U&& item, std::size_t w, std::size_t c, PushWait mode,
                            bool& waited, bool& wake) {
        if (closed_.load(std::memory_order_relaxed)) {
            ++shard.rejected;
            return Outcome::rejected;
        }
        const std::size_t room = shards_.reclaim_credit();
        shards_.record_high_water(shards_.held_weight());
        if (c <= room) {
            const std::size_t live = shards_.append_reserved(shard, std::forward<U>(item), w, c);
            wake = consumer_wants(live) || wake;
            return Outcome::accepted;
        }
        if (policy_ == Overflow::drop_oldest) {
            mark_overflowed(wake);
            const auto weigh_item = [this](const T& item_held) { return weigh(item_held); };
            const std::size_t live =
                shards_.drop_and_append(shard, std::forward<U>(item), w, c, room, weigh_item);
            wake = consumer_wants(live) || wake;
            return Outcome::accepted;
        }
        shards_.found_full(room);
        return full(shard, mode, waited, wake);
    }

    // A full buffer is a ready batch, whatever min_items says.
    void mark_overflowed(bool& wake) noexcept {
        if (!overflowed_.load()) {
            overflowed_.store(true);
        }
        wake = wake_at_.load() != no_waiter || wake;
    }

    // block or reject with no room for the item. Under the shard's lock (at least).
    Outcome full(Shard& shard, PushWait mode, bool& waited, bool& wake) {
        mark_overflowed(wake);
        if (policy_ == Overflow::block && mode != PushWait::never) {
            if (!waited) {
                waited = true;
                ++shard.blocked_pushes;
            }
            return Outcome::wait;
        }
        ++shard.rejected;
        return Outcome::rejected;
    }

    // Waits until a drain after `epoch` (the room epoch read before the buffer was found
    // full), close(), or the deadline. False only on timeout.
    bool wait_for_room(std::uint64_t epoch, PushWait mode, Clock::time_point deadline) {
        std::unique_lock lock(control_);
        // Counted before looking at the epoch; a drain counts itself before looking here.
        waiting_producers_.fetch_add(1);
        const auto room = [&] { return closed_.load() || shards_.room_epoch() != epoch; };
        bool in_time = true;
        if (mode == PushWait::forever) {
            space_cv_.wait(lock, room);
        } else {
            in_time = space_cv_.wait_until(lock, deadline, room);
        }
        waiting_producers_.fetch_sub(1);
        return in_time;
    }

    // Drains `shard` into `out`. Returns whether producers wait for the room it made: the
    // caller notifies them under control_.
    bool take(Shard& shard, batch_type& out) {
        // Cleared before the room is made: a push that finds the buffer full after that sets
        // it again, and a full buffer must not go unnoticed by the next wait_drain (its
        // shards may all hold fewer than min_items).
        if (overflowed_.load()) {
            overflowed_.store(false);
        }
        // Room made counts a new room epoch before it is in the pool (see offer and
        // wait_for_room); producers counted as waiting after that look at the epoch.
        return shards_.take(shard, out) != 0 && bounded_ && waiting_producers_.load() != 0;
    }

    // Under control_, so the woken consumer cannot return and destroy the buffer while the
    // producer still touches it. At most once per wait: the consumer re-arms wake_at_.
    [[gnu::noinline]] void wake_consumer() {
        std::lock_guard lock(control_);
        if (wake_at_.load() != no_waiter) {
            wake_at_.store(no_waiter);
            consumer_cv_.notify_all();
        }
    }

    const Overflow policy_;
    const bool bounded_;
    weigher_type weigher_;  // empty: every item weighs 1

    Shards shards_;  // one per producer thread (up to eight); one under drop_oldest

    // Read by every push, written about once per batch.
    alignas(false_sharing_range) std::atomic<std::size_t> wake_at_{no_waiter};
    std::atomic<bool> closed_{false};
    std::atomic<bool> overflowed_{false};  // a push found no room since the last drain

    alignas(false_sharing_range) std::mutex control_;  // the waits below
    std::condition_variable space_cv_;                 // producers waiting for room
    std::condition_variable_any consumer_cv_;          // the consumer in wait_drain (stop_token)
    std::atomic<std::size_t> waiting_producers_{0};
};

}  // namespace snaptail::detail
