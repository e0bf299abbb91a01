// SwapBuffer: a multi-producer, single-consumer batch buffer. Producers append under a short
// lock; the consumer takes everything at once by swapping vectors, so the storage of its
// previous batch becomes the next fill's and steady state allocates nothing.
#pragma once

#include <algorithm>
#include <cassert>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <ranges>
#include <stdexcept>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace snaptail {

/// What a push does with an item that does not fit.
enum class OverflowPolicy {
    block,        ///< Wait until the consumer drains: backpressure on the producers.
    reject,       ///< Refuse the item: the push returns false and counts it as rejected.
    drop_oldest,  ///< Discard the oldest items until it fits, counting them as dropped.
};

/// Counters of one SwapBuffer since its construction. Nothing disappears silently: every
/// item offered was either pushed or rejected, and pushed == drained + dropped + size().
struct SwapBufferStats {
    std::uint64_t pushed = 0;          ///< Items accepted.
    std::uint64_t drained = 0;         ///< Items handed to the consumer.
    std::uint64_t rejected = 0;        ///< Items refused: full (reject, try_push, push_for
                                       ///< timeout) or closed buffer.
    std::uint64_t dropped = 0;         ///< Accepted items discarded by drop_oldest.
    std::uint64_t drains = 0;          ///< Drains that handed over at least one item.
    std::uint64_t blocked_pushes = 0;  ///< Push calls that had to wait for room.
    std::size_t high_water_mark = 0;   ///< Largest weight held at once, in capacity() units.

    friend bool operator==(const SwapBufferStats&, const SwapBufferStats&) = default;
};

namespace detail {

enum class PushWait { never, until_deadline, forever };

// `start + d`, saturating: "wait a very long time" (duration::max()) must not overflow into
// the past.
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(std::chrono::steady_clock::time_point start,
                                                     std::chrono::duration<Rep, Period> d) {
    using TimePoint = std::chrono::steady_clock::time_point;
    using Seconds = std::chrono::duration<double>;
    if (d <= d.zero()) {
        return start;
    }
    if (Seconds(d) >= Seconds(TimePoint::max() - start) - Seconds(1)) {
        return TimePoint::max();
    }
    return start + std::chrono::ceil<TimePoint::duration>(d);
}

// push_range moves out of an owning container passed as an rvalue, and copies from
// anything else (lvalues, and views, which do not own their elements).
template <class R>
inline constexpr bool moves_elements_v =
    !std::is_lvalue_reference_v<R> && !std::ranges::borrowed_range<R>;

template <class R>
using range_element_t =
    std::conditional_t<moves_elements_v<R>, std::ranges::range_rvalue_reference_t<R>,
                       std::ranges::range_reference_t<R>>;

// A range whose elements push_range can turn into T.
template <class R, class T>
concept pushable_range =
    std::ranges::input_range<R> && std::constructible_from<T, range_element_t<R>>;

}  // namespace detail

/// A multi-producer, single-consumer buffer that hands its whole content to the consumer in
/// O(1) by swapping vectors.
///
/// Any number of threads push; one consumer at a time drains. A drain swaps the internal
/// vector with the consumer's (cleared) one, so both vectors' storage is recycled: once
/// they have grown to the largest batch, pushes and drains allocate nothing.
///
/// The capacity bounds the items held (or, with a weigher, their total weight, e.g. bytes).
/// The OverflowPolicy decides what a push does when the item does not fit. An item heavier
/// than the whole capacity fits only into an empty buffer, where it is held alone: block
/// waits for the consumer to drain, reject refuses it unless the buffer is empty,
/// drop_oldest drops everything before it. The weight held therefore never exceeds
/// max(capacity(), heaviest single item), and such an item cannot block a producer forever.
///
/// drop_oldest costs O(1) amortised per dropped item, not the O(size) of erasing a vector's
/// front: a dropped item is released at once (if T's move is noexcept) and its slot erased
/// in bulk once the dropped slots are as many as the live items, or at the next drain.
///
/// Exception guarantees are std::vector's: if T is nothrow-move-constructible or copyable,
/// a push of one item that throws (T's constructor, the allocator, or the weigher) changes
/// neither the buffer nor the counters, and a drain that throws hands nothing over.
///
/// Example: batch by count or linger.
/// @code
///   snaptail::SwapBuffer<std::string> lines(10'000);  // at most 10k lines; producers wait
///   // Producers, any thread:
///   lines.push(std::move(line));
///   // The consumer: 512 lines, or what arrived within 50 ms of the first one.
///   snaptail::SwapBuffer<std::string>::batch_type batch;
///   while (lines.wait_drain(batch, 512, std::chrono::milliseconds(50), stop)) {
///       write_all(batch);
///   }  // false once closed and empty, or stop requested with nothing left
/// @endcode
template <class T, class Allocator = std::allocator<T>>
class SwapBuffer {
  public:
    using value_type = T;
    using allocator_type = Allocator;
    using batch_type = std::vector<T, Allocator>;
    /// Weight of one item in capacity units. Called from producer threads (by push_range and
    /// drop_oldest under the buffer's lock), so it must be thread-safe and must not use the
    /// buffer; called again on items being dropped, so it must be deterministic.
    using weigher_type = std::function<std::size_t(const T&)>;

    /// Capacity of a buffer that never overflows.
    static constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();

    /// Buffer holding at most `capacity` items. Throws std::invalid_argument if capacity is 0.
    /// Does not allocate.
    explicit SwapBuffer(std::size_t capacity = unbounded,
                        OverflowPolicy policy = OverflowPolicy::block,
                        const Allocator& alloc = Allocator())
        : capacity_(capacity), policy_(policy), items_(alloc) {
        if (capacity_ == 0) {
            throw std::invalid_argument("snaptail::SwapBuffer: capacity must be positive");
        }
    }

    /// Buffer holding items of total weight at most `capacity`, each weighing
    /// `weigher(item)`; e.g. `[](const std::string& s) { return s.size(); }` bounds bytes.
    /// Throws std::invalid_argument if capacity is 0 or weigher is empty.
    SwapBuffer(std::size_t capacity, OverflowPolicy policy, weigher_type weigher,
               const Allocator& alloc = Allocator())
        : SwapBuffer(capacity, policy, alloc) {
        if (!weigher) {
            throw std::invalid_argument("snaptail::SwapBuffer: empty weigher");
        }
        weigher_ = std::move(weigher);
    }

    SwapBuffer(const SwapBuffer&) = delete;
    SwapBuffer& operator=(const SwapBuffer&) = delete;

    /// Destroys the items still inside: close() and drain first if they matter. No thread
    /// may be using the buffer.
    ~SwapBuffer() = default;

    // ---- Producers: any thread ----

    /// Appends `item`, applying the policy if it does not fit (under block: waits for room,
    /// with no first-come order among waiting producers). Returns false, counting a
    /// rejection and leaving `item` untouched, if the buffer is closed or, under reject,
    /// full. Allocates only while the vector grows. Thread-safe.
    bool push(T&& item) { return push_one(std::move(item), detail::PushWait::forever, {}); }
    /// As push(T&&), copying `item`.
    bool push(const T& item) { return push_one(item, detail::PushWait::forever, {}); }

    /// Constructs the item from `args` (before taking the lock, so construction never holds
    /// up other producers) and pushes it. Blocks, allocates and fails as push().
    /// Thread-safe.
    template <class... Args>
    requires std::constructible_from<T, Args...>
    bool emplace(Args&&... args) {
        T item(std::forward<Args>(args)...);
        return push(std::move(item));
    }

    /// As push(), but never waits for room: under block a full buffer rejects the item
    /// (counted). Takes the lock briefly. Thread-safe.
    [[nodiscard]] bool try_push(T&& item) {
        return push_one(std::move(item), detail::PushWait::never, {});
    }
    /// As try_push(T&&), copying `item`.
    [[nodiscard]] bool try_push(const T& item) {
        return push_one(item, detail::PushWait::never, {});
    }

    /// As push(), but under block waits at most `timeout` for room; on timeout returns false
    /// and counts the item as rejected. Thread-safe.
    template <class Rep, class Period>
    [[nodiscard]] bool push_for(T&& item, std::chrono::duration<Rep, Period> timeout) {
        return push_one(std::move(item), detail::PushWait::until_deadline,
                        detail::deadline_after(Clock::now(), timeout));
    }
    /// As push_for(T&&, timeout), copying `item`.
    template <class Rep, class Period>
    [[nodiscard]] bool push_for(const T& item, std::chrono::duration<Rep, Period> timeout) {
        return push_one(item, detail::PushWait::until_deadline,
                        detail::deadline_after(Clock::now(), timeout));
    }

    /// Pushes the elements of `range` in order under one lock, as if each were pushed in
    /// turn. Elements are moved out of an owning container passed as an rvalue
    /// (`push_range(std::move(vec))`) and copied otherwise. Under block, a range that does
    /// not fit goes in piece by piece as the consumer drains (other producers' items may
    /// land between the pieces). Stops at the first element refused (closed, or full under
    /// reject); that element and all after it are counted as rejected and left untouched.
    /// Returns the number accepted: a prefix of the range. If an exception is thrown, the
    /// elements before the failing one stay accepted. Thread-safe.
    template <detail::pushable_range<T> R>
    std::size_t push_range(R&& range) {
        auto it = std::ranges::begin(range);
        const auto last = std::ranges::end(range);
        std::size_t accepted = 0;
        bool waited = false;
        std::unique_lock lock(mutex_);
        for (; it != last; ++it) {
            if (!offer_element_locked<detail::moves_elements_v<R>>(lock, it, waited)) {
                break;
            }
            ++accepted;
        }
        if (it != last) {
            // The refused element was counted by offer_locked; the rest were never offered.
            ++it;
            stats_.rejected += static_cast<std::uint64_t>(std::ranges::distance(it, last));
        }
        return accepted;
    }

    // ---- Consumer: one thread at a time ----

    /// Takes every item: clears `out`, then swaps it with the internal vector in O(1), so
    /// `out`'s storage is reused for the next fill. Never blocks (beyond the lock); allocates
    /// nothing. `out`'s allocator must compare equal to get_allocator() unless it propagates
    /// on swap. Wakes producers waiting for room.
    void drain(batch_type& out) {
        out.clear();  // destroy the previous batch without holding up producers
        std::lock_guard lock(mutex_);
        take_locked(out);
    }

    /// Takes every item into a new vector. Unlike drain(out), leaves the buffer an empty
    /// vector to refill, so the next pushes allocate; prefer drain(out) in a loop.
    [[nodiscard]] batch_type drain() {
        batch_type out(get_allocator());
        drain(out);
        return out;
    }

    /// Waits for a batch, then drains it into `out` as drain(out) does. The batch is ready
    /// when at least `min_items` (at least 1) are held, or a push found the buffer full, or
    /// `max_wait` has passed since the buffer last became non-empty (so no item lingers much
    /// longer than max_wait, however late the call), or the buffer is closed, or `stop` is
    /// requested. An empty buffer is waited on without limit until an item, close or stop.
    /// Returns true if it drained at least one item; false only when closed or stopped with
    /// nothing left, which ends a consumer loop. One consumer at a time; allocates nothing.
    template <class Rep, class Period>
    bool wait_drain(batch_type& out, std::size_t min_items,
                    std::chrono::duration<Rep, Period> max_wait, std::stop_token stop = {}) {
        out.clear();
        min_items = std::max<std::size_t>(min_items, 1);
        std::unique_lock lock(mutex_);
        const auto ready = [&] {
            return closed_ || overflowed_ || live_locked() >= min_items || stop.stop_requested();
        };
        while (!ready()) {
            if (live_locked() == 0) {
                wake_at_ = 1;  // the first item starts the linger clock
                consumer_cv_.wait(lock, stop, [&] { return ready() || live_locked() != 0; });
                continue;
            }
            const auto deadline = detail::deadline_after(first_arrival_, max_wait);
            if (Clock::now() >= deadline) {
                break;
            }
            wake_at_ = min_items;
            if (deadline == Clock::time_point::max()) {
                consumer_cv_.wait(lock, stop, ready);
            } else if (!consumer_cv_.wait_until(lock, stop, deadline, ready)) {
                break;  // lingered max_wait, or stop (which ready() reports)
            }
        }
        wake_at_ = no_waiter;
        take_locked(out);
        return !out.empty();
    }

    // ---- Any thread ----

    /// Closes the buffer: later pushes fail (counted as rejected), every waiting producer and
    /// consumer wakes, and the items inside stay drainable. Idempotent. Thread-safe.
    void close() {
        std::lock_guard lock(mutex_);
        closed_ = true;
        // Notified under the lock: a woken thread may otherwise destroy the buffer while
        // this call still touches it.
        space_cv_.notify_all();
        consumer_cv_.notify_all();
    }

    /// Whether close() was called. Thread-safe.
    bool is_closed() const {
        std::lock_guard lock(mutex_);
        return closed_;
    }

    /// Number of items held; a snapshot, possibly stale on return. Thread-safe.
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return live_locked();
    }

    /// Total weight held (equal to size() without a weigher); a snapshot. Thread-safe.
    std::size_t weight() const {
        std::lock_guard lock(mutex_);
        return weight_;
    }

    /// Whether no item is held; a snapshot. Thread-safe.
    bool empty() const { return size() == 0; }

    /// The bound on weight() given at construction, or `unbounded`. Thread-safe, lock-free.
    std::size_t capacity() const noexcept { return capacity_; }

    /// The policy given at construction. Thread-safe, lock-free.
    OverflowPolicy policy() const noexcept { return policy_; }

    /// A copy of the counters; consistent with each other (taken under the lock).
    /// Thread-safe.
    SwapBufferStats stats() const {
        std::lock_guard lock(mutex_);
        return stats_;
    }

    /// Makes room for `items` items in the internal vector ahead of time, so that even the
    /// first fills do not allocate. Allocates. Thread-safe.
    void reserve(std::size_t items) {
        std::lock_guard lock(mutex_);
        items_.reserve(head_ + items);
    }

    /// The allocator of the internal vector. Thread-safe.
    allocator_type get_allocator() const {
        std::lock_guard lock(mutex_);
        return items_.get_allocator();
    }

  private:
    using Clock = std::chrono::steady_clock;

    static constexpr std::size_t no_waiter = std::numeric_limits<std::size_t>::max();

    std::size_t weigh(const T& item) const { return weigher_ ? weigher_(item) : 1; }

    std::size_t live_locked() const noexcept { return items_.size() - head_; }

    // An item heavier than the capacity counts as exactly the capacity: it then fits only
    // into an empty buffer, so it is neither refused forever nor blocks a producer forever.
    bool fits(std::size_t held, std::size_t w) const noexcept {
        return held <= capacity_ && std::min(w, capacity_) <= capacity_ - held;
    }

    template <class U>
    bool push_one(U&& item, detail::PushWait mode, Clock::time_point deadline) {
        const std::size_t w = weigh(item);  // user code, so outside the lock
        if (mode == detail::PushWait::until_deadline && deadline == Clock::time_point::max()) {
            mode = detail::PushWait::forever;
        }
        bool waited = false;
        std::unique_lock lock(mutex_);
        return offer_locked(lock, std::forward<U>(item), w, mode, deadline, waited);
    }

    // One element of push_range. Elements that are not references to T are materialised
    // once, to be weighed and then moved in.
    template <bool Move, class It>
    bool offer_element_locked(std::unique_lock<std::mutex>& lock, It& it, bool& waited) {
        using Ref = std::iter_reference_t<It>;
        constexpr auto mode = detail::PushWait::forever;
        if constexpr (std::is_reference_v<Ref> && std::is_same_v<std::remove_cvref_t<Ref>, T>) {
            const std::size_t w = weigh(*it);
            if constexpr (Move) {
                return offer_locked(lock, std::ranges::iter_move(it), w, mode, {}, waited);
            } else {
                return offer_locked(lock, *it, w, mode, {}, waited);
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
            return offer_locked(lock, std::move(item), w, mode, {}, waited);
        }
    }

    // Applies the policy to one item of weight `w` and appends it. `waited` makes a
    // push_range count as one blocked push however often it waits.
    template <class U>
    bool offer_locked(std::unique_lock<std::mutex>& lock, U&& item, std::size_t w,
                      detail::PushWait mode, Clock::time_point deadline, bool& waited) {
        if (!closed_ && !fits(weight_, w)) {
            overflowed_ = true;  // a full buffer is a ready batch, whatever min_items says
            if (wake_at_ != no_waiter) {
                wake_consumer_locked();
            }
            if (policy_ == OverflowPolicy::block && mode != detail::PushWait::never) {
                if (!waited) {
                    waited = true;
                    ++stats_.blocked_pushes;
                }
                const auto room = [&] { return closed_ || fits(weight_, w); };
                ++waiting_producers_;
                if (mode == detail::PushWait::forever) {
                    space_cv_.wait(lock, room);
                } else {
                    space_cv_.wait_until(lock, deadline, room);
                }
                --waiting_producers_;
            }
        }
        if (closed_ || (policy_ != OverflowPolicy::drop_oldest && !fits(weight_, w))) {
            ++stats_.rejected;
            return false;
        }
        append_locked(std::forward<U>(item), w);
        return true;
    }

    // Everything that can throw (compaction, the weigher, push_back) happens before the
    // first change, so a throw leaves the buffer and the counters as they were.
    template <class U>
    void append_locked(U&& item, std::size_t w) {
        std::size_t drop = 0;
        std::size_t freed = 0;
        if (policy_ == OverflowPolicy::drop_oldest) {
            if (head_ != 0 && head_ >= live_locked()) {
                compact_locked();
            }
            while (head_ + drop < items_.size() && !fits(weight_ - std::min(freed, weight_), w)) {
                freed += weigh(items_[head_ + drop]);
                ++drop;
            }
            if (head_ + drop == items_.size()) {
                freed = weight_;  // all gone, whatever a non-deterministic weigher said
            }
        }
        const bool was_empty = live_locked() == 0;
        items_.push_back(std::forward<U>(item));

        for (std::size_t i = head_; i != head_ + drop; ++i) {
            release(items_[i]);
        }
        head_ += drop;
        weight_ = weight_ - std::min(freed, weight_) + w;
        stats_.dropped += drop;
        ++stats_.pushed;
        stats_.high_water_mark = std::max(stats_.high_water_mark, weight_);
        if (was_empty) {
            first_arrival_ = Clock::now();
        }
        if (live_locked() >= wake_at_) {
            wake_consumer_locked();
        }
    }

    // Dropped items stay in the vector's front until the next compaction (erasing the front
    // of a vector per drop would cost O(size)); moving out of them frees what they own now,
    // which is the point of a memory bound. T with a throwing move keeps them whole until
    // the compaction: moving out could throw after the push had been committed.
    static void release(T& dropped) noexcept {
        if constexpr (std::is_nothrow_move_constructible_v<T>) {
            [[maybe_unused]] T released(std::move(dropped));
        }
    }

    // Erases the dropped prefix. Run when it is as long as the live part, so each drop
    // costs O(1) amortised; and before each drain.
    void compact_locked() {
        if (head_ == 0) {
            return;
        }
        const auto live_begin =
            items_.begin() + static_cast<typename batch_type::difference_type>(head_);
        if constexpr (std::is_nothrow_move_assignable_v<T>) {
            items_.erase(items_.begin(), live_begin);
        } else {
            // erase() would move-assign over live items, and a throw would lose or duplicate
            // some; copying into a fresh vector leaves items_ untouched until the swap.
            batch_type kept(items_.get_allocator());
            kept.reserve(items_.capacity());
            for (auto it = live_begin; it != items_.end(); ++it) {
                kept.push_back(std::move_if_noexcept(*it));
            }
            items_.swap(kept);
        }
        head_ = 0;
    }

    void take_locked(batch_type& out) {
        assert(std::allocator_traits<Allocator>::propagate_on_container_swap::value ||
               out.get_allocator() == items_.get_allocator());
        compact_locked();
        const std::size_t n = items_.size();
        items_.swap(out);
        weight_ = 0;
        overflowed_ = false;
        stats_.drained += n;
        if (n != 0) {
            ++stats_.drains;
        }
        if (waiting_producers_ != 0) {
            space_cv_.notify_all();
        }
    }

    // Under the lock, so the woken consumer cannot return and destroy the buffer while the
    // producer still touches it. At most once per wait: the consumer re-arms wake_at_.
    void wake_consumer_locked() {
        wake_at_ = no_waiter;
        consumer_cv_.notify_all();
    }

    const std::size_t capacity_;
    const OverflowPolicy policy_;
    weigher_type weigher_;  // empty: every item weighs 1

    mutable std::mutex mutex_;
    std::condition_variable space_cv_;         // producers waiting for room
    std::condition_variable_any consumer_cv_;  // the consumer in wait_drain (stop_token)

    // Guarded by mutex_.
    batch_type items_;  // [head_, size()) live; [0, head_) dropped by drop_oldest
    std::size_t head_ = 0;
    std::size_t weight_ = 0;  // of the live items
    bool closed_ = false;
    bool overflowed_ = false;          // a push found no room since the last drain
    std::size_t wake_at_ = no_waiter;  // live count at which to wake the waiting consumer
    std::size_t waiting_producers_ = 0;
    Clock::time_point first_arrival_{};  // when the buffer last became non-empty
    SwapBufferStats stats_{};
};

}  // namespace snaptail

/// Formats as `pushed=N drained=N rejected=N dropped=N drains=N blocked_pushes=N
/// high_water_mark=N`. Takes no format spec.
template <>
struct fmt::formatter<snaptail::SwapBufferStats> {
    constexpr auto parse(format_parse_context& ctx) -> format_parse_context::iterator {
        auto it = ctx.begin();
        if (it != ctx.end() && *it != '}') {
            FMT_THROW(format_error("snaptail::SwapBufferStats takes no format spec"));
        }
        return it;
    }

    template <class FormatContext>
    auto format(const snaptail::SwapBufferStats& s, FormatContext& ctx) const
        -> decltype(ctx.out()) {
        return fmt::format_to(ctx.out(),
                              "pushed={} drained={} rejected={} dropped={} drains={} "
                              "blocked_pushes={} high_water_mark={}",
                              s.pushed, s.drained, s.rejected, s.dropped, s.drains,
                              s.blocked_pushes, s.high_water_mark);
    }
};
