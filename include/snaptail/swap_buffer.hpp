// SwapBuffer: a multi-producer, single-consumer batch buffer. Producers append to shards (one
// per producer thread, up to eight) under a lock held for a few nanoseconds; the consumer takes
// a shard's whole content at once by swapping vectors, so the storage of its previous batch
// becomes the next fill's and steady state allocates nothing. The engine is in
// detail/swap_core.hpp, the shards in detail/swap_shards.hpp.
#pragma once

#include <snaptail/detail/swap_core.hpp>
#include <snaptail/detail/swap_push.hpp>

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
/// to a shard of its own (a vector under a lock that only it and the consumer take), so
/// producers do not contend with each other, and a push seldom writes anything another
/// producer reads. A drain hands over one shard: it swaps the shard's vector with the consumer's
/// (cleared) one, so both vectors' storage is recycled, and once they have grown to the
/// largest batch, pushes and drains allocate nothing.
///
/// Order: the items of one thread come out in the order it pushed them. A batch holds the
/// items of one shard in push order; there is no order across shards, so an item of one
/// thread may come out before an item another thread pushed earlier. There are eight shards:
/// a thread is numbered at its first push to any SwapBuffer and uses shard number mod 8, so
/// up to eight threads that start pushing one after another have shards of their own, and
/// more share (their items interleave in push order). drop_oldest instead puts every thread
/// in one shard, so that "oldest" means the first pushed: that policy keeps a total order
/// (the order of the pushes), always drops the globally oldest items, and has the single
/// queue's contention between producers.
///
/// The capacity bounds the items held (or, with a weigher, their total weight, e.g. bytes).
/// The OverflowPolicy decides what a push does when the item does not fit. An item heavier
/// than the whole capacity fits only into an empty buffer, where it is held alone: block
/// waits for the consumer to drain, reject refuses it unless the buffer is empty,
/// drop_oldest drops everything before it. The weight held therefore never exceeds
/// max(capacity(), heaviest single item), and such an item cannot block a producer forever.
/// (An item of weight 0 always fits.) The shards take the capacity from a shared pool a
/// slice at a time, so a push rarely touches shared memory; when the pool runs dry, the push
/// locks every shard and takes back their unused slices before it decides, so a buffer that
/// refuses, drops or waits is full, however the room was spread.
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
///   // The consumer: 512 lines of one producer thread, or all one has within 50 ms of its
///   // first.
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
    /// Throws std::invalid_argument if capacity is 0 or weigher is empty. Allocates only what
    /// moving the std::function does.
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

    /// Appends `item` to the calling thread's shard, applying the policy if it does not fit.
    /// Under block, waits for room (with no first-come order among waiting producers).
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
    /// (counted). Allocates as push(). Thread-safe.
    [[nodiscard]] bool try_push(T&& item) {
        return core_.push_one(std::move(item), detail::PushWait::never, {});
    }
    /// As try_push(T&&), copying `item`.
    [[nodiscard]] bool try_push(const T& item) {
        return core_.push_one(item, detail::PushWait::never, {});
    }

    /// As push(), but under block waits at most `timeout` for room; on timeout returns false
    /// and counts the item as rejected. Allocates as push(). Thread-safe.
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
    /// Allocates as push(). A consumer taking this shard waits for the whole range (short of
    /// a wait for room), so keep ranges to about a batch. Thread-safe.
    template <detail::pushable_range<T> R>
    std::size_t push_range(R&& range) {
        return core_.push_range(std::forward<R>(range));
    }

    // ---- Consumer: one thread at a time ----

    /// Takes the items of one shard, the one that became non-empty first: clears `out`, then
    /// swaps it with that shard's vector in O(1), so `out`'s storage is reused for the next
    /// fill. With one producer thread that is every item; with several, call again (until
    /// `out` comes back empty) for the other shards. Does not wait (beyond the shards' locks,
    /// held for nanoseconds); allocates nothing. `out`'s allocator must compare equal to
    /// get_allocator() unless it propagates on swap. Wakes producers waiting for room. One
    /// consumer at a time.
    void drain(batch_type& out) { core_.drain(out); }

    /// Takes one shard's items into a new vector, as drain(out) does. Unlike drain(out),
    /// leaves that shard an empty vector to refill, so its next pushes allocate; prefer
    /// drain(out) in a loop. One consumer at a time.
    [[nodiscard]] batch_type drain() {
        batch_type out(get_allocator());
        drain(out);
        return out;
    }

    /// Waits for a batch, then drains one shard into `out` as drain(out) does. Takes a shard
    /// holding at least `min_items` (at least 1) as soon as there is one. Otherwise takes the
    /// shard that became non-empty first once `max_wait` has passed since then (so no item
    /// lingers much longer than max_wait, however late the call), or a push found the buffer
    /// full, or the buffer is closed, or `stop` is requested. An empty buffer is waited on
    /// without limit until an item, close or stop. Returns true if it drained at least one
    /// item; false only when closed or stopped with nothing left, which ends a consumer loop.
    /// Blocks; allocates nothing. One consumer at a time.
    template <class Rep, class Period>
    bool wait_drain(batch_type& out, std::size_t min_items,
                    std::chrono::duration<Rep, Period> max_wait, std::stop_token stop = {}) {
        return core_.wait_drain(out, min_items, max_wait, std::move(stop));
    }

    // ---- Any thread ----

    /// Closes the buffer: later pushes fail (counted as rejected), every waiting producer and
    /// consumer wakes, and the items inside stay drainable (a push that had begun is either
    /// refused or drained). Idempotent. Takes an internal mutex briefly; does not allocate.
    /// Thread-safe.
    void close() { core_.close(); }

    /// Whether close() was called. Does not block or allocate. Thread-safe, lock-free.
    bool is_closed() const noexcept { return core_.is_closed(); }

    /// Number of items held; a snapshot (every shard locked at once, briefly), possibly stale
    /// on return. Does not allocate. Thread-safe.
    std::size_t size() const { return core_.size(); }

    /// Total weight held (equal to size() without a weigher); a snapshot, taken as size().
    /// Thread-safe.
    std::size_t weight() const { return core_.weight(); }

    /// Whether no item is held; a snapshot, taken as size(). Thread-safe.
    bool empty() const { return size() == 0; }

    /// The bound on weight() given at construction, or `unbounded`. Does not block or
    /// allocate. Thread-safe, lock-free.
    std::size_t capacity() const noexcept { return capacity_; }

    /// The policy given at construction. Does not block or allocate. Thread-safe, lock-free.
    OverflowPolicy policy() const noexcept { return policy_; }

    /// A copy of the counters, consistent with each other (every shard locked at once,
    /// briefly). Does not allocate. Thread-safe.
    SwapBufferStats stats() const {
        const detail::SwapCounts c = core_.counts();
        return SwapBufferStats{c.pushed, c.drained,        c.rejected,       c.dropped,
                               c.drains, c.blocked_pushes, c.high_water_mark};
    }

    /// Makes room for `items` items in every shard's vector ahead of time (eight vectors,
    /// one under drop_oldest), so that even the first fills do not allocate, whichever
    /// threads push. Allocates; holds every shard's lock meanwhile. Thread-safe.
    void reserve(std::size_t items) { core_.reserve(items); }

    /// The allocator of the shards' vectors. Takes a shard's lock briefly. Thread-safe.
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
