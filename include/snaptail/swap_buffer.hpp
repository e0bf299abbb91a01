// SwapBuffer: a multi-producer, single-consumer batch buffer. Producers append to shards (one
// per producer thread, up to eight) under a lock held for a few nanoseconds; the consumer takes
// a shard's whole content at once by swapping vectors, so the storage of its previous batch
// becomes the next fill's and steady state allocates nothing.
#pragma once

#include <snaptail/detail/swap_core.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <stop_token>
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

/// A multi-producer, single-consumer buffer that hands its content to the consumer in O(1)
/// by swapping vectors.
///
/// Any number of threads push; one consumer at a time drains. Each producer thread appends
/// to its own shard (a vector under a lock that only it and the consumer take), so producers
/// do not contend with each other. A drain takes one shard's items: it swaps the shard's
/// vector with the consumer's (cleared) one, so both vectors' storage is recycled, and once
/// they have grown to the largest batch, pushes and drains allocate nothing.
///
/// Order: the items of one thread come out in the order it pushed them, and a batch holds
/// the items of the threads that share one shard (usually one thread), in push order. There
/// is no order across shards: the shard that became non-empty first is handed over first,
/// so a batch from one thread may hold items pushed after items of another thread still in
/// the buffer. There are eight shards; a thread's shard is its start order modulo eight, so
/// threads started one after another use different shards and a ninth shares with a first.
/// Under drop_oldest every thread uses one shard, which keeps a total order (the order of the
/// pushes) so that "oldest" has a meaning: that policy keeps the old single-queue behaviour
/// and its contention between producers.
///
/// The capacity bounds the items held (or, with a weigher, their total weight, e.g. bytes).
/// The OverflowPolicy decides what a push does when the item does not fit. An item heavier
/// than the whole capacity fits only into an empty buffer, where it is held alone: block
/// waits for the consumer to drain, reject refuses it unless the buffer is empty,
/// drop_oldest drops everything before it. The weight held therefore never exceeds
/// max(capacity(), heaviest single item), and such an item cannot block a producer forever.
/// (Zero-weight items always fit.) Capacity is handed to the shards in slices, so a push
/// usually touches nothing another producer writes; when the slices run out, the push locks
/// every shard to decide exactly, so a buffer that reports full is full.
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
///   // The consumer: 512 lines of one producer, or what arrived within 50 ms of the first.
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
    /// drop_oldest under a shard's lock), so it must be thread-safe and must not use the
    /// buffer; called again on items being dropped, so it must be deterministic.
    using weigher_type = std::function<std::size_t(const T&)>;

    /// Capacity of a buffer that never overflows.
    static constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();

    /// Buffer holding at most `capacity` items. Throws std::invalid_argument if capacity is 0.
    /// Does not allocate (the shards are part of the object).
    explicit SwapBuffer(std::size_t capacity = unbounded,
                        OverflowPolicy policy = OverflowPolicy::block,
                        const Allocator& alloc = Allocator())
        : capacity_(checked_capacity(capacity)),
          policy_(policy),
          core_(capacity_, static_cast<detail::Overflow>(policy), alloc) {}

    /// Buffer holding items of total weight at most `capacity`, each weighing
    /// `weigher(item)`; e.g. `[](const std::string& s) { return s.size(); }` bounds bytes.
    /// Throws std::invalid_argument if capacity is 0 or weigher is empty.
    SwapBuffer(std::size_t capacity, OverflowPolicy policy, weigher_type weigher,
               const Allocator& alloc = Allocator())
        : SwapBuffer(capacity, policy, alloc) {
        if (!weigher) {
            throw std::invalid_argument("snaptail::SwapBuffer: empty weigher");
        }
        core_.set_weigher(std::move(weigher));
    }

    SwapBuffer(const SwapBuffer&) = delete;
    SwapBuffer& operator=(const SwapBuffer&) = delete;

    /// Destroys the items still inside: close() and drain first if they matter. No thread
    /// may be using the buffer.
    ~SwapBuffer() = default;

    // ---- Producers: any thread ----

    /// Appends `item` to the calling thread's shard, applying the policy if it does not fit
    /// (under block: waits for room, with no first-come order among waiting producers).
    /// Returns false, counting a rejection and leaving `item` untouched, if the buffer is
    /// closed or, under reject, full. Allocates only while the shard's vector grows.
    /// Thread-safe.
    bool push(T&& item) { return core_.push_one(std::move(item), detail::PushWait::forever, {}); }
    /// As push(T&&), copying `item`.
    bool push(const T& item) { return core_.push_one(item, detail::PushWait::forever, {}); }

    /// Constructs the item from `args` (before taking any lock, so construction never holds
    /// up the consumer) and pushes it. Blocks, allocates and fails as push(). Thread-safe.
    template <class... Args>
    requires std::constructible_from<T, Args...>
    bool emplace(Args&&... args) {
        T item(std::forward<Args>(args)...);
        return push(std::move(item));
    }

    /// As push(), but never waits for room: under block a full buffer rejects the item
    /// (counted). Thread-safe.
    [[nodiscard]] bool try_push(T&& item) {
        return core_.push_one(std::move(item), detail::PushWait::never, {});
    }
    /// As try_push(T&&), copying `item`.
    [[nodiscard]] bool try_push(const T& item) {
        return core_.push_one(item, detail::PushWait::never, {});
    }

    /// As push(), but under block waits at most `timeout` for room; on timeout returns false
    /// and counts the item as rejected. Thread-safe.
    template <class Rep, class Period>
    [[nodiscard]] bool push_for(T&& item, std::chrono::duration<Rep, Period> timeout) {
        return core_.push_one(std::move(item), detail::PushWait::until_deadline,
                              detail::deadline_after(Clock::now(), timeout));
    }
    /// As push_for(T&&, timeout), copying `item`.
    template <class Rep, class Period>
    [[nodiscard]] bool push_for(const T& item, std::chrono::duration<Rep, Period> timeout) {
        return core_.push_one(item, detail::PushWait::until_deadline,
                              detail::deadline_after(Clock::now(), timeout));
    }

    /// Pushes the elements of `range` in order under one lock of the calling thread's shard,
    /// as if each were pushed in turn. Elements are moved out of an owning container passed
    /// as an rvalue (`push_range(std::move(vec))`) and copied otherwise. Under block, a range
    /// that does not fit goes in piece by piece as the consumer drains. Stops at the first
    /// element refused (closed, or full under reject); that element and all after it are
    /// counted as rejected and left untouched. Returns the number accepted: a prefix of the
    /// range. If an exception is thrown, the elements before the failing one stay accepted.
    /// The consumer waits for the whole range to take this shard, so keep ranges to batch
    /// size. Thread-safe.
    template <detail::pushable_range<T> R>
    std::size_t push_range(R&& range) {
        return core_.push_range(std::forward<R>(range));
    }

    // ---- Consumer: one thread at a time ----

    /// Takes the items of one shard, the one that became non-empty first: clears `out`, then
    /// swaps it with that shard's vector in O(1), so `out`'s storage is reused for the next
    /// fill. With one producer thread that is every item; with several, call again (until
    /// `out` comes back empty) for the other shards. Never blocks beyond the shards' short
    /// locks; allocates nothing. `out`'s allocator must compare equal to get_allocator()
    /// unless it propagates on swap. Wakes producers waiting for room.
    void drain(batch_type& out) { core_.drain(out); }

    /// Takes one shard's items into a new vector, as drain(out) does. Unlike drain(out),
    /// leaves that shard an empty vector to refill, so its next pushes allocate; prefer
    /// drain(out) in a loop.
    [[nodiscard]] batch_type drain() {
        batch_type out(get_allocator());
        drain(out);
        return out;
    }

    /// Waits for a batch, then drains it into `out` as drain(out) does. A batch is ready when
    /// a shard holds at least `min_items` (at least 1; that shard is taken), or a push found
    /// the buffer full, or `max_wait` has passed since the oldest shard became non-empty (so
    /// no item lingers much longer than max_wait, however late the call), or the buffer is
    /// closed, or `stop` is requested; but for the first case, the oldest shard is taken. An
    /// empty buffer is waited on without limit until an item, close or stop. Returns true if
    /// it drained at least one item; false only when closed or stopped with nothing left,
    /// which ends a consumer loop. One consumer at a time; allocates nothing.
    template <class Rep, class Period>
    bool wait_drain(batch_type& out, std::size_t min_items,
                    std::chrono::duration<Rep, Period> max_wait, std::stop_token stop = {}) {
        return core_.wait_drain(out, min_items, max_wait, std::move(stop));
    }

    // ---- Any thread ----

    /// Closes the buffer: later pushes fail (counted as rejected), every waiting producer and
    /// consumer wakes, and the items inside stay drainable. Idempotent. Thread-safe.
    void close() { core_.close(); }

    /// Whether close() was called. Thread-safe, lock-free.
    bool is_closed() const noexcept { return core_.is_closed(); }

    /// Number of items held; a snapshot (every shard locked in turn), possibly stale on
    /// return. Thread-safe.
    std::size_t size() const { return core_.size(); }

    /// Total weight held (equal to size() without a weigher); a snapshot. Thread-safe.
    std::size_t weight() const { return core_.weight(); }

    /// Whether no item is held; a snapshot. Thread-safe.
    bool empty() const { return size() == 0; }

    /// The bound on weight() given at construction, or `unbounded`. Thread-safe, lock-free.
    std::size_t capacity() const noexcept { return capacity_; }

    /// The policy given at construction. Thread-safe, lock-free.
    OverflowPolicy policy() const noexcept { return policy_; }

    /// A copy of the counters; consistent with each other (every shard locked at once).
    /// Thread-safe.
    SwapBufferStats stats() const {
        const detail::SwapCounts c = core_.counts();
        return SwapBufferStats{c.pushed, c.drained,        c.rejected,       c.dropped,
                               c.drains, c.blocked_pushes, c.high_water_mark};
    }

    /// Makes room for `items` items in every shard's vector ahead of time (eight vectors,
    /// one under drop_oldest), so that even the first fills do not allocate, whichever
    /// threads push. Allocates. Thread-safe.
    void reserve(std::size_t items) { core_.reserve(items); }

    /// The allocator of the shards' vectors. Thread-safe.
    allocator_type get_allocator() const { return core_.get_allocator(); }

  private:
    using Clock = std::chrono::steady_clock;

    static_assert(static_cast<int>(OverflowPolicy::block) ==
                      static_cast<int>(detail::Overflow::block) &&
                  static_cast<int>(OverflowPolicy::reject) ==
                      static_cast<int>(detail::Overflow::reject) &&
                  static_cast<int>(OverflowPolicy::drop_oldest) ==
                      static_cast<int>(detail::Overflow::drop_oldest));

    static std::size_t checked_capacity(std::size_t capacity) {
        if (capacity == 0) {
            throw std::invalid_argument("snaptail::SwapBuffer: capacity must be positive");
        }
        return capacity;
    }

    const std::size_t capacity_;
    const OverflowPolicy policy_;
    detail::SwapCore<T, Allocator> core_;
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
