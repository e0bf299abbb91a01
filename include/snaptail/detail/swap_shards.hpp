// SwapBuffer's storage: the shards producers append to and the accounting of the capacity
// between them. The policies and the waiting are SwapCore's (detail/swap_core.hpp).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

#include <snaptail/detail/spin_lock.hpp>

namespace snaptail::detail {

// One shard: the items of the threads that push into it, in their push order. Everything but
// `weight` is guarded by `lock`.
template <class T, class Allocator>
struct alignas(false_sharing_range) SwapShard {
    explicit SwapShard(const Allocator& alloc) : items(alloc) {}
    SwapShard(const SwapShard&) = delete;
    SwapShard& operator=(const SwapShard&) = delete;
    ~SwapShard() = default;

    std::size_t live() const noexcept { return items.size() - head; }

    mutable SpinLock lock;            // mutable: the buffer's const members lock too
    std::vector<T, Allocator> items;  // [head, size()) live; [0, head) dropped (drop_oldest)
    std::size_t head = 0;
    std::size_t charge = 0;  // capacity units held by the live items
    std::size_t credit = 0;  // capacity units taken from the pool for the next pushes
    std::chrono::steady_clock::time_point first_arrival{};  // when it last became non-empty
    // Weight of the live items. Written under `lock`; read without it by a drain, which sums
    // the other shards for the high-water mark.
    std::atomic<std::size_t> weight{0};

    std::uint64_t pushed = 0;
    std::uint64_t drained = 0;
    std::uint64_t rejected = 0;
    std::uint64_t dropped = 0;
    std::uint64_t drains = 0;
    std::uint64_t blocked_pushes = 0;
};

// What a drain looks for: among the shards holding at least min_items, and among all, the one
// that became non-empty first.
template <class Shard>
struct ShardPick {
    Shard* full = nullptr;
    Shard* oldest = nullptr;
    std::chrono::steady_clock::time_point oldest_at = std::chrono::steady_clock::time_point::max();
};

// The shards of one SwapBuffer and the accounting of its capacity.
//
// Capacity is counted in "charge" units: an item of weight w is charged min(w, capacity), so
// an item heavier than the capacity fits only into an empty buffer. The pool, plus every
// shard's credit, plus every shard's charge, is the capacity at all times: a shard with credit
// pushes without touching anything another producer writes, and takes a slice from the pool
// when its credit runs out. Only with every shard locked is the room known exactly (the pool
// once all credit is back in it).
//
// Lock order: shards by index. Each member says which locks it needs.
template <class T, class Allocator>
class SwapShards {
  public:
    using Clock = std::chrono::steady_clock;
    using Shard = SwapShard<T, Allocator>;
    using Pick = ShardPick<Shard>;
    using batch_type = std::vector<T, Allocator>;

    // A power of two, at most the bits of nonempty_.
    static constexpr std::size_t max_shards = 8;

    // `shards` is 1 or max_shards.
    SwapShards(std::size_t capacity, bool bounded, std::size_t shards, const Allocator& alloc)
        : SwapShards(capacity, bounded, shards, alloc, std::make_index_sequence<max_shards>{}) {}

    // Every shard locked at once, in order.
    class AllLocked {
      public:
        explicit AllLocked(const SwapShards& set) : set_(set) {
            for (std::size_t i = 0; i < set_.count_; ++i) {
                set_.shards_[i].lock.lock();
            }
        }
        AllLocked(const AllLocked&) = delete;
        AllLocked& operator=(const AllLocked&) = delete;
        ~AllLocked() {
            for (std::size_t i = set_.count_; i-- > 0;) {
                set_.shards_[i].lock.unlock();
            }
        }

      private:
        const SwapShards& set_;
    };

    std::size_t count() const noexcept { return count_; }
    Shard& operator[](std::size_t i) noexcept { return shards_[i]; }
    const Shard& operator[](std::size_t i) const noexcept { return shards_[i]; }

    // The calling thread's shard: always the same one.
    Shard& mine() noexcept { return shards_[count_ == 1 ? 0 : this_thread_slot() % max_shards]; }

    std::size_t charge_of(std::size_t w) const noexcept { return std::min(w, capacity_); }

    // Whether the shard's credit covers `c` as it is. Under its lock.
    bool covers(const Shard& shard, std::size_t c) const noexcept {
        return !bounded_ || shard.credit >= c;
    }

    // Tops up the shard's credit to at least `c` from the pool, taking a slice at a time. False
    // if the pool has too little: then only a look at every shard can tell whether the buffer
    // is full. Under the shard's lock.
    bool take_credit(Shard& shard, std::size_t c) {
        if (covers(shard, c)) {
            return true;
        }
        const std::size_t need = c - shard.credit;
        std::size_t pool = pool_.load(std::memory_order_relaxed);
        std::size_t take = 0;
        do {
            if (pool < need) {
                return false;
            }
            take = std::min(pool, std::max(need, slice_));
        } while (!pool_.compare_exchange_weak(pool, pool - take, std::memory_order_relaxed));
        shard.credit += take;
        return true;
    }

    // Appends under the shard's lock, whose credit covers `c`; returns the shard's live count.
    // push_back is the only step that can throw, and it comes first. The path of every push:
    // inlined, as a call would cost as much as the rest.
    template <class U>
    [[gnu::always_inline]] std::size_t append(Shard& shard, U&& item, std::size_t w,
                                              std::size_t c) {
        const bool was_empty = shard.live() == 0;
        shard.items.push_back(std::forward<U>(item));
        if (bounded_) {
            shard.credit -= c;
        }
        shard.charge += c;
        shard.weight.store(shard.weight.load(std::memory_order_relaxed) + w,
                           std::memory_order_relaxed);
        ++shard.pushed;
        if (was_empty) {
            became_non_empty(shard);
        }
        return shard.live();
    }

    // Drains that returned room, counted before the room is back in the pool. Room appears
    // in no other way: while this count stays, the room left only shrinks.
    std::uint64_t room_epoch() const noexcept { return room_epoch_.load(); }

    // With every shard locked, after reclaim_credit() found `room` too little: remembered, so
    // that pushes needing more can be refused without locking every shard again.
    void found_full(std::size_t room) noexcept {
        full_room_.store(room);
        full_stamp_.store(room_epoch_.load() + 1);
    }

    // Whether a look at every shard, since `epoch` (read before), found less room than `c`:
    // then there is still less, and the buffer is full for this item. Lock-free.
    bool known_full(std::uint64_t epoch, std::size_t c) const noexcept {
        return full_stamp_.load() == epoch + 1 && full_room_.load() < c;
    }

    // With every shard locked: all credit back into the pool, which is then the room left.
    std::size_t reclaim_credit() noexcept {
        for (std::size_t i = 0; i < count_; ++i) {
            pool_.fetch_add(std::exchange(shards_[i].credit, 0), std::memory_order_relaxed);
        }
        return pool_.load(std::memory_order_relaxed);
    }

    // With every shard locked, after reclaim_credit() found room for `c`.
    template <class U>
    std::size_t append_reserved(Shard& shard, U&& item, std::size_t w, std::size_t c) {
        pool_.fetch_sub(c, std::memory_order_relaxed);
        shard.credit = c;
        const std::size_t held = held_weight();
        const std::size_t live = append(shard, std::forward<U>(item), w, c);
        record_high_water(held + w);
        return live;
    }

    // With the only shard locked (count() == 1) and reclaim_credit() having found less than
    // `c`: drops items from the front until the item fits, then appends it. Everything that
    // can throw (compaction, `weigh`, push_back) happens before the first change, so a throw
    // leaves the shard and its counters as they were.
    template <class U, class Weigh>
    std::size_t drop_and_append(Shard& shard, U&& item, std::size_t w, std::size_t c,
                                std::size_t room, const Weigh& weigh) {
        assert(count_ == 1);
        if (shard.head != 0 && shard.head >= shard.live()) {
            compact(shard);
        }
        std::size_t drop = 0;
        std::size_t freed_weight = 0;
        std::size_t freed_charge = 0;
        while (shard.head + drop < shard.items.size() && room + freed_charge < c) {
            const std::size_t dw = weigh(shard.items[shard.head + drop]);
            freed_weight += dw;
            freed_charge += charge_of(dw);
            ++drop;
        }
        if (shard.head + drop == shard.items.size()) {
            // All gone, whatever a non-deterministic weigher said.
            freed_weight = shard.weight.load(std::memory_order_relaxed);
            freed_charge = shard.charge;
        }
        const bool was_empty = shard.live() == 0;
        shard.items.push_back(std::forward<U>(item));

        for (std::size_t i = shard.head; i != shard.head + drop; ++i) {
            release(shard.items[i]);
        }
        shard.head += drop;
        shard.dropped += drop;
        const std::size_t weight = shard.weight.load(std::memory_order_relaxed);
        shard.weight.store(weight - std::min(freed_weight, weight) + w, std::memory_order_relaxed);
        // The only shard: the pool, the room freed and the credit are all its own.
        freed_charge = std::min(freed_charge, shard.charge);
        shard.credit = pool_.exchange(0, std::memory_order_relaxed) + freed_charge - c;
        shard.charge = shard.charge - freed_charge + c;
        ++shard.pushed;
        if (was_empty) {
            became_non_empty(shard);
        }
        record_high_water(shard.weight.load(std::memory_order_relaxed));
        return shard.live();
    }

    // The shards to drain next. Locks each shard marked non-empty (or every shard) in turn,
    // never two at once: a push lands either before the look, and is seen, or after it.
    Pick pick(std::size_t min_items, bool every_shard) const {
        Pick pick;
        Clock::time_point full_at = Clock::time_point::max();
        const unsigned mask = every_shard ? ~0U : nonempty_.load();
        for (std::size_t i = 0; i < count_; ++i) {
            if ((mask >> i & 1U) == 0) {
                continue;
            }
            Shard& shard = shards_[i];
            std::lock_guard lock(shard.lock);
            const std::size_t live = shard.live();
            if (live == 0) {
                continue;
            }
            if (pick.oldest == nullptr || shard.first_arrival < pick.oldest_at) {
                pick.oldest_at = shard.first_arrival;
                pick.oldest = &shard;
            }
            if (live >= min_items && (pick.full == nullptr || shard.first_arrival < full_at)) {
                full_at = shard.first_arrival;
                pick.full = &shard;
            }
        }
        return pick;
    }

    // Hands the shard's items over in O(1) by swapping vectors; returns the charge freed (back
    // in the pool). Takes the shard's lock. One consumer at a time.
    std::size_t take(Shard& shard, batch_type& out) {
        // Other shards only grow while this one is locked (only the consumer drains, and
        // drop_oldest has a single shard), so this sum is a weight that was held at once.
        std::size_t others = 0;
        for (std::size_t i = 0; i < count_; ++i) {
            if (&shards_[i] != &shard) {
                others += shards_[i].weight.load(std::memory_order_relaxed);
            }
        }
        std::lock_guard lock(shard.lock);
        assert(std::allocator_traits<Allocator>::propagate_on_container_swap::value ||
               out.get_allocator() == shard.items.get_allocator());
        compact(shard);  // may throw: nothing handed over yet
        record_high_water(others + shard.weight.load(std::memory_order_relaxed));
        const std::size_t n = shard.items.size();
        shard.items.swap(out);
        shard.weight.store(0, std::memory_order_relaxed);
        const std::size_t freed = std::exchange(shard.charge, 0);
        shard.drained += n;
        if (n != 0) {
            ++shard.drains;
        }
        nonempty_.fetch_and(~bit_of(shard));
        if (bounded_ && freed != 0) {
            room_epoch_.fetch_add(1);  // before the room: see known_full
            pool_.fetch_add(freed);
        }
        return freed;
    }

    // Under every shard's lock (or as a snapshot that may be torn).
    std::size_t held_weight() const noexcept {
        std::size_t held = 0;
        for (std::size_t i = 0; i < count_; ++i) {
            held += shards_[i].weight.load(std::memory_order_relaxed);
        }
        return held;
    }

    void record_high_water(std::size_t held) const noexcept {
        std::size_t seen = high_water_.load(std::memory_order_relaxed);
        while (held > seen && !high_water_.compare_exchange_weak(seen, held)) {
        }
    }

    std::size_t high_water() const noexcept { return high_water_.load(); }

  private:
    template <std::size_t... I>
    SwapShards(std::size_t capacity, bool bounded, std::size_t shards, const Allocator& alloc,
               std::index_sequence<I...> /*all shards*/)
        : capacity_(capacity),
          bounded_(bounded),
          count_(shards),
          // A quarter of an even share: shards refill a few times per capacity, and credit
          // left idle in other shards is at most a quarter of it until a full buffer
          // reclaims it.
          slice_(std::max<std::size_t>(1, capacity / (4 * shards))),
          shards_{{make_shard<I>(alloc)...}},
          pool_(capacity) {}

    template <std::size_t>
    static Shard make_shard(const Allocator& alloc) {
        return Shard(alloc);
    }

    unsigned bit_of(const Shard& shard) const noexcept {
        return 1U << static_cast<unsigned>(&shard - shards_.data());
    }

    void became_non_empty(Shard& shard) noexcept {
        shard.first_arrival = Clock::now();
        nonempty_.fetch_or(bit_of(shard));
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
    static void compact(Shard& shard) {
        if (shard.head == 0) {
            return;
        }
        auto& items = shard.items;
        const auto live_begin =
            items.begin() + static_cast<typename batch_type::difference_type>(shard.head);
        if constexpr (std::is_nothrow_move_assignable_v<T>) {
            items.erase(items.begin(), live_begin);
        } else {
            // erase() would move-assign over live items, and a throw would lose or duplicate
            // some; copying into a fresh vector leaves the items untouched until the swap.
            batch_type kept(items.get_allocator());
            kept.reserve(items.capacity());
            for (auto it = live_begin; it != items.end(); ++it) {
                kept.push_back(std::move_if_noexcept(*it));
            }
            items.swap(kept);
        }
        shard.head = 0;
    }

    const std::size_t capacity_;
    const bool bounded_;
    const std::size_t count_;  // shards in use
    const std::size_t slice_;  // credit a shard takes from the pool at once

    mutable std::array<Shard, max_shards> shards_;

    // Written when a shard refills its credit, becomes non-empty or is drained, or the buffer
    // is found full: not per push.
    alignas(false_sharing_range) std::atomic<std::size_t> pool_;  // room not credited
    std::atomic<unsigned> nonempty_{0};                           // bit i: shard i has items
    std::atomic<std::uint64_t> room_epoch_{0};
    std::atomic<std::uint64_t> full_stamp_{0};  // room_epoch_ + 1 when full_room_ was found
    std::atomic<std::size_t> full_room_{0};
    mutable std::atomic<std::size_t> high_water_{0};
};

}  // namespace snaptail::detail
