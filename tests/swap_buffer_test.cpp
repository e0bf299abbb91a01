// SwapBuffer: every member and policy, concurrency by sequence numbers, allocation, exception
// safety, weights and stats formatting.
#include <snaptail/swap_buffer.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <new>
#include <numeric>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "snaptail_catch.hpp"

using namespace std::chrono_literals;
using snaptail::OverflowPolicy;
using snaptail::SwapBuffer;
using snaptail::SwapBufferStats;
using Clock = std::chrono::steady_clock;

namespace {

// Polls `done` until it holds or `limit` passes: a condition-based wait, not a fixed sleep.
template <class Pred>
bool eventually(Pred done, Clock::duration limit = 5s) {
    const auto deadline = Clock::now() + limit;
    while (!done()) {
        if (Clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

std::vector<int> iota_vector(int first, int last) {
    std::vector<int> v(static_cast<std::size_t>(last - first));
    std::iota(v.begin(), v.end(), first);
    return v;
}

// Checks the conservation law that makes loss visible.
template <class B>
void require_balanced(const B& buffer) {
    const SwapBufferStats s = buffer.stats();
    REQUIRE(s.pushed == s.drained + s.dropped + buffer.size());
}

struct AllocLog {
    std::atomic<std::size_t> allocations{0};
    std::atomic<bool> fail_next{false};
};

template <class T>
struct CountingAllocator {
    using value_type = T;

    explicit CountingAllocator(AllocLog* l) noexcept : log(l) {}
    template <class U>
    CountingAllocator(const CountingAllocator<U>& other) noexcept : log(other.log) {}

    T* allocate(std::size_t n) {
        if (log->fail_next.exchange(false)) {
            throw std::bad_alloc();
        }
        ++log->allocations;
        return std::allocator<T>{}.allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>{}.deallocate(p, n); }

    friend bool operator==(const CountingAllocator& a, const CountingAllocator& b) noexcept {
        return a.log == b.log;
    }

    AllocLog* log;
};

// Copies and moves throw on demand: the countdown-th one throws, before touching anything.
// Its move is not noexcept, so std::vector copies it when reallocating.
struct Fragile {
    inline static int countdown = 0;  // 0: never throw

    explicit Fragile(int v) : value(v) {}
    Fragile(const Fragile& other) : value(other.value) { maybe_throw(); }
    Fragile(Fragile&& other) noexcept(false) : value(other.value) { maybe_throw(); }
    Fragile& operator=(const Fragile& other) {
        maybe_throw();
        value = other.value;
        return *this;
    }
    Fragile& operator=(Fragile&& other) noexcept(false) {
        maybe_throw();
        value = other.value;
        return *this;
    }
    ~Fragile() = default;

    static void maybe_throw() {
        if (countdown > 0 && --countdown == 0) {
            throw std::runtime_error("Fragile: injected failure");
        }
    }

    int value;
};

std::vector<int> values_of(const std::vector<Fragile>& items) {
    std::vector<int> v;
    for (const Fragile& f : items) {
        v.push_back(f.value);
    }
    return v;
}

std::size_t bytes(const std::string& s) {
    return s.size();
}

}  // namespace

TEST_CASE("SwapBuffer: construction and accessors", "[swap_buffer]") {
    SwapBuffer<int> b;
    CHECK(b.capacity() == SwapBuffer<int>::unbounded);
    CHECK(b.policy() == OverflowPolicy::block);
    CHECK(b.empty());
    CHECK(b.size() == 0);
    CHECK(b.weight() == 0);
    CHECK_FALSE(b.is_closed());
    CHECK(b.stats() == SwapBufferStats{});

    SwapBuffer<int> bounded(8, OverflowPolicy::drop_oldest);
    CHECK(bounded.capacity() == 8);
    CHECK(bounded.policy() == OverflowPolicy::drop_oldest);

    CHECK_THROWS_AS(SwapBuffer<int>(0), std::invalid_argument);
    CHECK_THROWS_AS(SwapBuffer<std::string>(8, OverflowPolicy::block, nullptr),
                    std::invalid_argument);
}

TEST_CASE("SwapBuffer: push, emplace and drain keep the order", "[swap_buffer]") {
    SwapBuffer<std::string> b;
    const std::string kept = "a";
    REQUIRE(b.push(kept));
    CHECK(kept == "a");  // copied
    REQUIRE(b.push(std::string("b")));
    REQUIRE(b.emplace(3U, 'x'));
    CHECK(b.size() == 3);
    CHECK_FALSE(b.empty());

    std::vector<std::string> out{"stale", "items"};
    b.drain(out);
    CHECK(out == std::vector<std::string>{"a", "b", "xxx"});
    CHECK(b.empty());
    const SwapBufferStats s = b.stats();
    CHECK(s.pushed == 3);
    CHECK(s.drained == 3);
    CHECK(s.drains == 1);
    CHECK(s.high_water_mark == 3);

    b.drain(out);  // nothing there: out is cleared, no batch counted
    CHECK(out.empty());
    CHECK(b.stats().drains == 1);

    REQUIRE(b.push("c"));
    CHECK(b.drain() == std::vector<std::string>{"c"});
    CHECK(b.stats().drains == 2);
    require_balanced(b);
}

TEST_CASE("SwapBuffer: drain(out) recycles the consumer's storage", "[swap_buffer]") {
    SwapBuffer<int> b;
    std::vector<int> out;
    out.reserve(8);
    const int* spare = out.data();

    REQUIRE(b.push(1));
    REQUIRE(b.push(2));
    b.drain(out);
    CHECK(out == std::vector<int>{1, 2});
    const int* first = out.data();
    CHECK(first != spare);

    // The next fill goes into the storage the consumer handed back.
    REQUIRE(b.push(3));
    b.drain(out);
    CHECK(out == std::vector<int>{3});
    CHECK(out.data() == spare);

    REQUIRE(b.push(4));
    b.drain(out);
    CHECK(out.data() == first);
}

TEST_CASE("SwapBuffer: reject policy refuses, counts, and leaves the item alone", "[swap_buffer]") {
    SwapBuffer<std::unique_ptr<int>> b(2, OverflowPolicy::reject);
    REQUIRE(b.push(std::make_unique<int>(1)));
    REQUIRE(b.push(std::make_unique<int>(2)));

    auto third = std::make_unique<int>(3);
    CHECK_FALSE(b.push(std::move(third)));
    REQUIRE(third != nullptr);  // not moved from
    CHECK_FALSE(b.try_push(std::move(third)));
    CHECK_FALSE(b.push_for(std::move(third), 1h));  // reject never waits
    REQUIRE(third != nullptr);
    CHECK(b.size() == 2);
    CHECK(b.stats().rejected == 3);
    CHECK(b.stats().blocked_pushes == 0);

    std::vector<std::unique_ptr<int>> out;
    b.drain(out);
    REQUIRE(out.size() == 2);
    CHECK(*out[0] == 1);
    CHECK(*out[1] == 2);
    REQUIRE(b.push(std::move(third)));
    CHECK(b.stats().high_water_mark == 2);
    require_balanced(b);
}

TEST_CASE("SwapBuffer: drop_oldest keeps the newest items", "[swap_buffer]") {
    SwapBuffer<int> b(5, OverflowPolicy::drop_oldest);
    std::vector<int> out;

    SECTION("many more pushes than the capacity") {
        for (int i = 1; i <= 100; ++i) {
            REQUIRE(b.push(i));
            REQUIRE(b.size() == static_cast<std::size_t>(std::min(i, 5)));
        }
        b.drain(out);
        CHECK(out == iota_vector(96, 101));
        const SwapBufferStats s = b.stats();
        CHECK(s.pushed == 100);
        CHECK(s.dropped == 95);
        CHECK(s.drained == 5);
        CHECK(s.high_water_mark == 5);
        CHECK(s.rejected == 0);
    }

    SECTION("drains between overflows") {
        for (int round = 0; round < 10; ++round) {
            const int first = round * 100;
            const int count = 1 + round * 2;  // 1, 3, 5, 7, ...
            for (int i = first; i < first + count; ++i) {
                REQUIRE(b.push(i));
            }
            require_balanced(b);
            b.drain(out);
            CHECK(out == iota_vector(first + std::max(0, count - 5), first + count));
        }
        CHECK(b.stats().dropped == 2 + 4 + 6 + 8 + 10 + 12 + 14);
    }
    require_balanced(b);
}

TEST_CASE("SwapBuffer: block policy try_push and push_for", "[swap_buffer]") {
    SwapBuffer<int> b(2, OverflowPolicy::block);
    REQUIRE(b.push(1));
    REQUIRE(b.try_push(2));

    CHECK_FALSE(b.try_push(3));
    CHECK(b.stats().rejected == 1);
    CHECK(b.stats().blocked_pushes == 0);  // try_push never waits

    const auto start = Clock::now();
    CHECK_FALSE(b.push_for(3, 50ms));
    CHECK(Clock::now() - start >= 50ms);
    CHECK(b.stats().rejected == 2);
    CHECK(b.stats().blocked_pushes == 1);
    CHECK(b.size() == 2);

    SECTION("push_for succeeds once the consumer drains") {
        std::vector<int> drained;
        std::thread consumer([&] {
            if (eventually([&] { return b.stats().blocked_pushes == 2; })) {
                b.drain(drained);
            }
        });
        const bool pushed = b.push_for(4, 10s);
        consumer.join();
        CHECK(pushed);
        CHECK(drained == std::vector<int>{1, 2});
        CHECK(b.drain() == std::vector<int>{4});
    }
    require_balanced(b);
}

TEST_CASE("SwapBuffer: a blocked push resumes after a drain", "[swap_buffer]") {
    SwapBuffer<int> b(1, OverflowPolicy::block);
    REQUIRE(b.push(1));
    std::atomic<bool> pushed{false};
    std::thread producer([&] { pushed = b.push(2); });

    REQUIRE(eventually([&] { return b.stats().blocked_pushes == 1; }));
    CHECK_FALSE(pushed);
    CHECK(b.size() == 1);
    CHECK(b.drain() == std::vector<int>{1});
    producer.join();
    CHECK(pushed);
    CHECK(b.drain() == std::vector<int>{2});
    CHECK(b.stats().high_water_mark == 1);
}

TEST_CASE("SwapBuffer: push_range", "[swap_buffer]") {
    SECTION("a range that fits goes in whole and in order") {
        SwapBuffer<int> b;
        const std::vector<int> source{1, 2, 3};
        CHECK(b.push_range(source) == 3);
        CHECK(source == std::vector<int>{1, 2, 3});
        CHECK(b.push_range(std::array<int, 2>{4, 5}) == 2);
        CHECK(b.drain() == iota_vector(1, 6));
        CHECK(b.stats().pushed == 5);
    }

    SECTION("reject accepts the prefix that fits and leaves the rest untouched") {
        SwapBuffer<std::unique_ptr<int>> b(3, OverflowPolicy::reject);
        REQUIRE(b.push(std::make_unique<int>(0)));
        std::vector<std::unique_ptr<int>> source;
        for (int i = 1; i <= 4; ++i) {
            source.push_back(std::make_unique<int>(i));
        }
        CHECK(b.push_range(std::move(source)) == 2);
        CHECK(source[0] == nullptr);  // moved in
        CHECK(source[1] == nullptr);
        REQUIRE(source[2] != nullptr);  // refused, untouched
        REQUIRE(source[3] != nullptr);
        CHECK(b.stats().rejected == 2);
        std::vector<std::unique_ptr<int>> out;
        b.drain(out);
        REQUIRE(out.size() == 3);
        CHECK((*out[0] == 0 && *out[1] == 1 && *out[2] == 2));
    }

    SECTION("drop_oldest keeps the end of a range longer than the capacity") {
        SwapBuffer<int> b(3, OverflowPolicy::drop_oldest);
        CHECK(b.push_range(iota_vector(1, 11)) == 10);
        CHECK(b.drain() == std::vector<int>{8, 9, 10});
        CHECK(b.stats().dropped == 7);
    }

    SECTION("block takes a range longer than the capacity piece by piece") {
        SwapBuffer<int> b(4, OverflowPolicy::block);
        std::vector<int> received;
        std::size_t largest_batch = 0;
        std::thread consumer([&] {
            std::vector<int> batch;
            while (b.wait_drain(batch, 1, 1s)) {
                largest_batch = std::max(largest_batch, batch.size());
                received.insert(received.end(), batch.begin(), batch.end());
            }
        });
        const std::size_t accepted = b.push_range(iota_vector(0, 100));
        b.close();
        consumer.join();
        CHECK(accepted == 100);
        CHECK(received == iota_vector(0, 100));
        CHECK(largest_batch <= 4);
        CHECK(b.stats().high_water_mark <= 4);
        CHECK(b.stats().blocked_pushes == 1);  // one call, counted once however often it waits
    }

    SECTION("a closed buffer accepts nothing and counts everything") {
        SwapBuffer<int> b;
        b.close();
        CHECK(b.push_range(iota_vector(0, 5)) == 0);
        CHECK(b.stats().rejected == 5);
    }

    SECTION("elements are converted, and a view is copied from") {
        SwapBuffer<std::string> b;
        CHECK(b.push_range(std::array<const char*, 2>{"a", "b"}) == 2);
        std::vector<std::string> source{"c", "d"};
        CHECK(b.push_range(std::span<std::string>(source)) == 2);  // rvalue, but a view
        CHECK(source == std::vector<std::string>{"c", "d"});
        CHECK(b.drain() == std::vector<std::string>{"a", "b", "c", "d"});
    }
}

TEST_CASE("SwapBuffer: close", "[swap_buffer]") {
    SECTION("later pushes fail and are counted; the items inside stay drainable") {
        SwapBuffer<int> b;
        REQUIRE(b.push(1));
        REQUIRE(b.push(2));
        b.close();
        b.close();  // idempotent
        CHECK(b.is_closed());
        CHECK_FALSE(b.push(3));
        CHECK_FALSE(b.try_push(3));
        CHECK_FALSE(b.push_for(3, 1s));
        CHECK_FALSE(b.emplace(3));
        CHECK(b.push_range(std::vector<int>{3, 4}) == 0);
        CHECK(b.stats().rejected == 6);

        std::vector<int> out;
        CHECK(b.wait_drain(out, 100, 1h));  // closed: no waiting for min_items
        CHECK(out == std::vector<int>{1, 2});
        CHECK_FALSE(b.wait_drain(out, 1, 1h));  // closed and empty: the consumer loop ends
        CHECK(out.empty());
        require_balanced(b);
    }

    SECTION("wakes a blocked producer, whose item is rejected") {
        SwapBuffer<int> b(1, OverflowPolicy::block);
        REQUIRE(b.push(1));
        std::atomic<int> result{-1};
        std::thread producer([&] { result = b.push(2) ? 1 : 0; });
        REQUIRE(eventually([&] { return b.stats().blocked_pushes == 1; }));
        b.close();
        producer.join();
        CHECK(result == 0);
        CHECK(b.stats().rejected == 1);
        CHECK(b.drain() == std::vector<int>{1});
    }

    SECTION("wakes a waiting consumer, which drains what is there") {
        SwapBuffer<int> b;
        REQUIRE(b.push(7));
        std::vector<int> out;
        bool drained = false;
        Clock::duration waited{};
        std::thread consumer([&] {
            const auto start = Clock::now();
            drained = b.wait_drain(out, 100, 1h);
            waited = Clock::now() - start;
        });
        b.close();
        consumer.join();
        CHECK(drained);
        CHECK(out == std::vector<int>{7});
        CHECK(waited < 5s);
    }
}

TEST_CASE("SwapBuffer: wait_drain returns once min_items are there", "[swap_buffer]") {
    SwapBuffer<int> b;
    std::vector<int> out;

    SECTION("already there: at once") {
        for (int i = 0; i < 5; ++i) {
            REQUIRE(b.push(i));
        }
        CHECK(b.wait_drain(out, 5, 1h));
        CHECK(out == iota_vector(0, 5));
    }

    SECTION("pushed by another thread") {
        std::thread producer([&] {
            for (int i = 0; i < 5; ++i) {
                (void)b.push(i);
            }
        });
        const auto start = Clock::now();
        std::vector<int> all;
        while (all.size() < 5 && Clock::now() - start < 5s) {
            REQUIRE(b.wait_drain(out, 5, 1h));
            all.insert(all.end(), out.begin(), out.end());
        }
        producer.join();
        CHECK(all == iota_vector(0, 5));
        CHECK(Clock::now() - start < 5s);
    }
}

TEST_CASE("SwapBuffer: wait_drain lingers max_wait from the first item, not from the call",
          "[swap_buffer]") {
    SwapBuffer<int> b;
    std::vector<int> out;

    SECTION("the clock starts at the first item") {
        Clock::time_point returned{};
        bool drained = false;
        std::thread consumer([&] {
            drained = b.wait_drain(out, 100, 200ms);
            returned = Clock::now();
        });
        // A gap before the first item: a clock started by the call would expire in it.
        std::this_thread::sleep_for(300ms);
        const auto pushed_at = Clock::now();
        REQUIRE(b.push(1));
        consumer.join();
        CHECK(drained);
        CHECK(out == std::vector<int>{1});
        CHECK(returned - pushed_at >= 200ms);
        CHECK(returned - pushed_at < 5s);
    }

    SECTION("items older than max_wait are drained at once, newer ones notwithstanding") {
        const auto pushed_at = Clock::now();
        REQUIRE(b.push(1));
        REQUIRE(eventually([&] { return Clock::now() - pushed_at >= 400ms; }));
        REQUIRE(b.push(2));
        const auto start = Clock::now();
        CHECK(b.wait_drain(out, 100, 300ms));
        // A clock started by the call, or by the newest item, would wait 300 ms.
        CHECK(Clock::now() - start < 300ms);
        CHECK(out == std::vector<int>{1, 2});
    }
}

TEST_CASE("SwapBuffer: wait_drain returns when a push finds the buffer full", "[swap_buffer]") {
    SwapBuffer<int> b(4, OverflowPolicy::block);
    std::vector<int> out;
    bool drained = false;
    std::thread consumer([&] { drained = b.wait_drain(out, 100, 1h); });
    const auto start = Clock::now();
    for (int i = 1; i <= 5; ++i) {
        REQUIRE(b.push(i));  // the fifth waits for the consumer, which the full buffer wakes
    }
    consumer.join();
    CHECK(Clock::now() - start < 5s);
    CHECK(drained);
    CHECK(out == std::vector<int>{1, 2, 3, 4});
    CHECK(b.drain() == std::vector<int>{5});
}

TEST_CASE("SwapBuffer: a stop request wakes wait_drain", "[swap_buffer]") {
    SwapBuffer<int> b;
    std::vector<int> out;

    // Each case passes however the threads interleave; the grace period only makes it likely
    // that the stop arrives while the consumer is already asleep, the path worth testing.
    const auto stop_waiting_consumer = [&](std::size_t min_items) {
        std::stop_source stop;
        std::atomic<bool> entered{false};
        bool drained = false;
        std::thread consumer([&] {
            entered = true;
            drained = b.wait_drain(out, min_items, 1h, stop.get_token());
        });
        REQUIRE(eventually([&] { return entered.load(); }));
        std::this_thread::sleep_for(50ms);
        stop.request_stop();
        consumer.join();
        return drained;
    };

    SECTION("asleep on an empty buffer: returns false") {
        CHECK_FALSE(stop_waiting_consumer(10));
        CHECK(out.empty());
    }

    SECTION("asleep below min_items: drains what is there") {
        REQUIRE(b.push(1));
        CHECK(stop_waiting_consumer(10));
        CHECK(out == std::vector<int>{1});
    }

    SECTION("already stopped: drains what is there, then returns false") {
        REQUIRE(b.push(1));
        REQUIRE(b.push(2));
        std::stop_source stop;
        stop.request_stop();
        CHECK(b.wait_drain(out, 10, 1h, stop.get_token()));
        CHECK(out == std::vector<int>{1, 2});
        CHECK_FALSE(b.wait_drain(out, 10, 1h, stop.get_token()));
    }

    SECTION("a jthread consumer loop ends when the jthread is destroyed") {
        std::atomic<std::size_t> received{0};
        {
            std::jthread consumer([&](std::stop_token st) {
                std::vector<int> batch;
                while (b.wait_drain(batch, 1000, 1h, st)) {
                    received += batch.size();
                }
            });
            REQUIRE(b.push(1));
        }  // requests stop and joins: no close() needed
        CHECK(received == 1);
    }
}

namespace {

constexpr std::uint64_t tag(std::uint64_t producer, std::uint64_t seq) {
    return producer << 32 | seq;
}

struct Observed {
    std::vector<std::uint64_t> count;  // items seen per producer
    std::vector<std::int64_t> last;    // last sequence number seen per producer
    bool in_order = true;              // strictly increasing per producer
    bool contiguous = true;            // and without gaps
    std::size_t largest_batch = 0;

    explicit Observed(std::size_t producers) : count(producers, 0), last(producers, -1) {}

    void see(const std::vector<std::uint64_t>& batch) {
        largest_batch = std::max(largest_batch, batch.size());
        for (const std::uint64_t item : batch) {
            const auto p = static_cast<std::size_t>(item >> 32);
            const auto seq = static_cast<std::int64_t>(item & 0xffff'ffffU);
            in_order = in_order && seq > last[p];
            contiguous = contiguous && seq == last[p] + 1;
            last[p] = seq;
            ++count[p];
        }
    }
};

// Runs `producers` threads through `produce(buffer, producer index)`, one consumer batching
// with wait_drain until close, and returns what the consumer saw.
template <class Produce>
Observed run_mpsc(SwapBuffer<std::uint64_t>& b, std::size_t producers, Produce produce) {
    Observed seen(producers);
    std::thread consumer([&] {
        std::vector<std::uint64_t> batch;
        while (b.wait_drain(batch, 32, 1ms)) {
            seen.see(batch);
        }
    });
    std::vector<std::thread> threads;
    for (std::size_t p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] { produce(b, p); });
    }
    for (std::thread& t : threads) {
        t.join();
    }
    b.close();
    consumer.join();
    return seen;
}

}  // namespace

TEST_CASE("SwapBuffer: several producers, one consumer: every item once, in order",
          "[swap_buffer]") {
    constexpr std::uint64_t per_producer = 20000;

    SECTION("block: every item delivered exactly once, the size bounded") {
        constexpr std::size_t capacity = 64;
        SwapBuffer<std::uint64_t> b(capacity, OverflowPolicy::block);
        // Each producer uses a different way in.
        const Observed seen = run_mpsc(b, 4, [](SwapBuffer<std::uint64_t>& buf, std::size_t p) {
            std::uint64_t seq = 0;
            while (seq < per_producer) {
                const std::uint64_t item = tag(p, seq);
                switch (p) {
                    case 0:
                        (void)buf.push(item);
                        ++seq;
                        break;
                    case 1:
                        (void)buf.emplace(item);
                        ++seq;
                        break;
                    case 2: {
                        std::vector<std::uint64_t> chunk;
                        for (; seq < per_producer && chunk.size() < 7; ++seq) {
                            chunk.push_back(tag(p, seq));
                        }
                        (void)buf.push_range(chunk);
                        break;
                    }
                    default:
                        (void)buf.push_for(item, 10s);
                        ++seq;
                        break;
                }
            }
        });
        CHECK(seen.in_order);
        CHECK(seen.contiguous);
        CHECK(seen.count == std::vector<std::uint64_t>(4, per_producer));
        CHECK(seen.largest_batch <= capacity);
        const SwapBufferStats s = b.stats();
        CHECK(s.pushed == 4 * per_producer);
        CHECK(s.drained == 4 * per_producer);
        CHECK(s.rejected == 0);
        CHECK(s.dropped == 0);
        CHECK(s.high_water_mark <= capacity);
        CHECK(s.high_water_mark > 0);
    }

    SECTION("drop_oldest: what arrives is in order, and what is missing was counted") {
        SwapBuffer<std::uint64_t> b(16, OverflowPolicy::drop_oldest);
        const Observed seen = run_mpsc(b, 3, [](SwapBuffer<std::uint64_t>& buf, std::size_t p) {
            for (std::uint64_t seq = 0; seq < per_producer; ++seq) {
                (void)buf.push(tag(p, seq));
            }
        });
        CHECK(seen.in_order);
        const SwapBufferStats s = b.stats();
        CHECK(s.pushed == 3 * per_producer);
        CHECK(s.drained == std::accumulate(seen.count.begin(), seen.count.end(), 0ULL));
        CHECK(s.drained + s.dropped == s.pushed);
        CHECK(s.high_water_mark <= 16);
    }

    SECTION("reject: what arrives is exactly what try_push accepted") {
        SwapBuffer<std::uint64_t> b(16, OverflowPolicy::reject);
        std::vector<std::uint64_t> accepted(3, 0);
        const Observed seen =
            run_mpsc(b, 3, [&accepted](SwapBuffer<std::uint64_t>& buf, std::size_t p) {
                for (std::uint64_t seq = 0; seq < per_producer; ++seq) {
                    if (buf.try_push(tag(p, seq))) {
                        ++accepted[p];
                    }
                }
            });
        CHECK(seen.in_order);
        CHECK(seen.count == accepted);
        const SwapBufferStats s = b.stats();
        CHECK(s.pushed + s.rejected == 3 * per_producer);
        CHECK(s.drained == s.pushed);
        CHECK(s.high_water_mark <= 16);
    }
}

TEST_CASE("SwapBuffer: steady-state drains allocate nothing", "[swap_buffer]") {
    AllocLog log;
    const CountingAllocator<int> alloc(&log);
    using Buffer = SwapBuffer<int, CountingAllocator<int>>;

    SECTION("single thread, once both vectors have grown") {
        Buffer b(Buffer::unbounded, OverflowPolicy::block, alloc);
        Buffer::batch_type out(alloc);
        const auto fill = [&] {
            for (int i = 0; i < 100; ++i) {
                REQUIRE(b.push(i));
            }
        };
        fill();
        b.drain(out);
        fill();
        b.drain(out);
        REQUIRE(log.allocations > 0);
        const std::size_t warm = log.allocations;
        for (int round = 0; round < 50; ++round) {
            fill();
            b.drain(out);
            REQUIRE(out.size() == 100);
        }
        CHECK(log.allocations == warm);
    }

    SECTION("a producer thread against a wait_drain consumer, after reserve") {
        Buffer b(64, OverflowPolicy::block, alloc);
        b.reserve(64);
        Buffer::batch_type out(alloc);
        out.reserve(64);
        const std::size_t warm = log.allocations;
        std::thread producer([&] {
            for (int i = 0; i < 20000; ++i) {
                (void)b.push(i);
            }
            b.close();
        });
        std::size_t received = 0;
        while (b.wait_drain(out, 16, 1ms)) {
            received += out.size();
        }
        producer.join();
        CHECK(received == 20000);
        CHECK(log.allocations == warm);
    }

    SECTION("drain() by value leaves nothing to refill, so the next push allocates") {
        Buffer b(Buffer::unbounded, OverflowPolicy::block, alloc);
        REQUIRE(b.push(1));
        CHECK(b.drain().size() == 1);
        const std::size_t before = log.allocations;
        REQUIRE(b.push(2));
        CHECK(log.allocations == before + 1);
    }
}

TEST_CASE("SwapBuffer: move-only items", "[swap_buffer]") {
    using Ptr = std::unique_ptr<int>;
    SwapBuffer<Ptr> b(3, OverflowPolicy::drop_oldest);
    REQUIRE(b.push(std::make_unique<int>(1)));
    REQUIRE(b.emplace(new int(2)));
    std::vector<Ptr> more;
    more.push_back(std::make_unique<int>(3));
    more.push_back(std::make_unique<int>(4));
    CHECK(b.push_range(std::move(more)) == 2);  // drops 1

    std::vector<Ptr> out;
    b.drain(out);
    REQUIRE(out.size() == 3);
    CHECK(*out[0] == 2);
    CHECK(*out[1] == 3);
    CHECK(*out[2] == 4);
    CHECK(b.stats().dropped == 1);
}

TEST_CASE("SwapBuffer: a push that throws changes nothing", "[swap_buffer]") {
    struct CountdownReset {
        ~CountdownReset() { Fragile::countdown = 0; }
    } reset;

    SECTION("a copy that throws") {
        SwapBuffer<Fragile> b;
        REQUIRE(b.push(Fragile(1)));
        const Fragile item(2);
        Fragile::countdown = 1;
        CHECK_THROWS_AS(b.push(item), std::runtime_error);
        CHECK(b.size() == 1);
        CHECK(b.stats().pushed == 1);
        CHECK(b.stats().high_water_mark == 1);
        CHECK(values_of(b.drain()) == std::vector<int>{1});
    }

    SECTION("a throw at every point of the reallocation") {
        SwapBuffer<Fragile> b;
        std::vector<int> expected;
        for (int v = 0; v < 40; ++v) {
            for (int k = 1;; ++k) {
                const SwapBufferStats before = b.stats();
                Fragile::countdown = k;
                try {
                    const bool pushed = b.push(Fragile(v));  // not inside REQUIRE: it may throw
                    REQUIRE(pushed);
                    expected.push_back(v);
                    break;
                } catch (const std::runtime_error&) {
                    REQUIRE(b.stats() == before);
                    REQUIRE(b.size() == expected.size());
                }
            }
        }
        Fragile::countdown = 0;
        CHECK(values_of(b.drain()) == expected);
    }

    SECTION("the allocator throws") {
        AllocLog log;
        const CountingAllocator<int> alloc(&log);
        SwapBuffer<int, CountingAllocator<int>> b(8, OverflowPolicy::block, alloc);
        REQUIRE(b.push(1));
        log.fail_next = true;
        CHECK_THROWS_AS(b.push(2), std::bad_alloc);
        CHECK(b.size() == 1);
        CHECK(b.stats().pushed == 1);
        REQUIRE(b.push(2));
        std::vector<int, CountingAllocator<int>> out(alloc);
        b.drain(out);
        CHECK(std::vector<int>(out.begin(), out.end()) == std::vector<int>{1, 2});
    }

    SECTION("the weigher throws") {
        SwapBuffer<std::string> b(100, OverflowPolicy::block, [](const std::string& s) {
            if (s == "poison") {
                throw std::runtime_error("weigher");
            }
            return s.size();
        });
        REQUIRE(b.push("ok"));
        CHECK_THROWS_AS(b.push("poison"), std::runtime_error);
        CHECK(b.size() == 1);
        CHECK(b.weight() == 2);
        CHECK(b.stats().pushed == 1);
    }

    SECTION("drop_oldest and drain, with a throw at every point") {
        // A model of what the buffer must hold, updated only when an operation succeeds.
        SwapBuffer<Fragile> b(4, OverflowPolicy::drop_oldest);
        std::deque<int> model;
        std::uint64_t dropped = 0;
        std::uint64_t failures = 0;
        for (int v = 0; v < 60; ++v) {
            for (int k = 1;; ++k) {
                const SwapBufferStats before = b.stats();
                Fragile::countdown = k;
                try {
                    const bool pushed = b.push(Fragile(v));
                    REQUIRE(pushed);
                    model.push_back(v);
                    if (model.size() > 4) {
                        model.pop_front();
                        ++dropped;
                    }
                    break;
                } catch (const std::runtime_error&) {
                    ++failures;
                    REQUIRE(b.stats() == before);
                    REQUIRE(b.size() == model.size());
                }
            }
            if (v % 13 == 12) {
                std::vector<Fragile> out;
                for (int k = 1;; ++k) {
                    Fragile::countdown = k;
                    try {
                        b.drain(out);
                        break;
                    } catch (const std::runtime_error&) {
                        ++failures;
                        REQUIRE(b.size() == model.size());
                    }
                }
                Fragile::countdown = 0;
                REQUIRE(values_of(out) == std::vector<int>(model.begin(), model.end()));
                model.clear();
            }
        }
        Fragile::countdown = 0;
        CHECK(failures > 60);  // the injection did hit pushes, compactions and drains
        CHECK(b.stats().dropped == dropped);
        CHECK(values_of(b.drain()) == std::vector<int>(model.begin(), model.end()));
        require_balanced(b);
    }
}

TEST_CASE("SwapBuffer: a weigher bounds bytes", "[swap_buffer]") {
    const std::string huge(16, 'h');  // heavier than the whole capacity of 10

    SECTION("reject") {
        SwapBuffer<std::string> b(10, OverflowPolicy::reject, bytes);
        REQUIRE(b.push("abcd"));
        REQUIRE(b.push("efgh"));
        CHECK_FALSE(b.push("ijk"));  // 11 > 10
        REQUIRE(b.push("xy"));       // exactly 10
        CHECK(b.weight() == 10);
        CHECK(b.size() == 3);
        CHECK_FALSE(b.push(huge));  // not into a non-empty buffer
        CHECK(b.drain() == std::vector<std::string>{"abcd", "efgh", "xy"});
        CHECK(b.weight() == 0);

        REQUIRE(b.push(huge));  // alone into an empty one
        CHECK(b.weight() == 16);
        CHECK_FALSE(b.push("a"));
        CHECK(b.stats().rejected == 3);
        CHECK(b.stats().high_water_mark == 16);
    }

    SECTION("drop_oldest drops by weight") {
        SwapBuffer<std::string> b(10, OverflowPolicy::drop_oldest, bytes);
        REQUIRE(b.push("aaaa"));
        REQUIRE(b.push("bbbb"));
        REQUIRE(b.push("cc"));
        REQUIRE(b.push("ddd"));  // drops "aaaa"
        CHECK(b.weight() == 9);
        CHECK(b.stats().dropped == 1);
        REQUIRE(b.push(huge));  // drops everything before it
        CHECK(b.weight() == 16);
        CHECK(b.stats().dropped == 4);
        REQUIRE(b.push("e"));  // drops the huge one
        CHECK(b.drain() == std::vector<std::string>{"e"});
        CHECK(b.stats().dropped == 5);
        require_balanced(b);
    }

    SECTION("block: an item heavier than the capacity waits for an empty buffer, no more") {
        SwapBuffer<std::string> b(10, OverflowPolicy::block, bytes);
        REQUIRE(b.push("abc"));
        std::atomic<bool> pushed{false};
        std::thread producer([&] { pushed = b.push(huge); });
        REQUIRE(eventually([&] { return b.stats().blocked_pushes == 1; }));
        CHECK(b.drain() == std::vector<std::string>{"abc"});
        producer.join();
        CHECK(pushed);
        CHECK(b.drain() == std::vector<std::string>{huge});
    }

    SECTION("block under concurrency: the bytes held never exceed the capacity") {
        constexpr std::size_t capacity = 64;
        SwapBuffer<std::string> b(capacity, OverflowPolicy::block, bytes);
        std::size_t heaviest_batch = 0;
        std::size_t received = 0;
        std::thread consumer([&] {
            std::vector<std::string> batch;
            while (b.wait_drain(batch, 8, 1ms)) {
                std::size_t total = 0;
                for (const std::string& s : batch) {
                    total += s.size();
                }
                heaviest_batch = std::max(heaviest_batch, total);
                received += batch.size();
            }
        });
        std::vector<std::thread> producers;
        for (std::size_t p = 0; p < 2; ++p) {
            producers.emplace_back([&b, p] {
                for (std::size_t i = 0; i < 10000; ++i) {
                    (void)b.push(std::string(1 + (i * 7 + p) % 20, 'x'));
                }
            });
        }
        for (std::thread& t : producers) {
            t.join();
        }
        b.close();
        consumer.join();
        CHECK(received == 20000);
        CHECK(heaviest_batch <= capacity);
        CHECK(b.stats().high_water_mark <= capacity);
    }
}

TEST_CASE("SwapBuffer: stats format with fmt", "[swap_buffer]") {
    SwapBuffer<int> b(2, OverflowPolicy::reject);
    REQUIRE(b.push(1));
    REQUIRE(b.push(2));
    CHECK_FALSE(b.push(3));
    std::vector<int> out;
    b.drain(out);
    CHECK(fmt::format("{}", b.stats()) ==
          "pushed=2 drained=2 rejected=1 dropped=0 drains=1 blocked_pushes=0 high_water_mark=2");

    SwapBuffer<int> d(1, OverflowPolicy::drop_oldest);
    REQUIRE(d.push(1));
    REQUIRE(d.push(2));
    CHECK(fmt::format("[{}]", d.stats()) ==
          "[pushed=2 drained=0 rejected=0 dropped=1 drains=0 blocked_pushes=0 "
          "high_water_mark=1]");
}

// ---- Shards: one per producer thread ----

namespace {

// What producer p pushed, in order, taken apart from the items the consumer saw.
std::vector<std::vector<std::uint64_t>> by_producer(const std::vector<std::uint64_t>& items,
                                                    std::size_t producers) {
    std::vector<std::vector<std::uint64_t>> seqs(producers);
    for (const std::uint64_t item : items) {
        seqs[static_cast<std::size_t>(item >> 32)].push_back(item & 0xffff'ffffU);
    }
    return seqs;
}

std::vector<std::uint64_t> iota_u64(std::uint64_t first, std::uint64_t last) {
    std::vector<std::uint64_t> v(static_cast<std::size_t>(last - first));
    std::iota(v.begin(), v.end(), first);
    return v;
}

// Drains `b` until it is empty (one shard per drain), in the order the batches come.
template <class B>
std::vector<typename B::value_type> drain_all(B& b) {
    std::vector<typename B::value_type> all;
    typename B::batch_type batch;
    for (b.drain(batch); !batch.empty(); b.drain(batch)) {
        all.insert(all.end(), batch.begin(), batch.end());
    }
    return all;
}

const char* policy_name(OverflowPolicy policy) {
    switch (policy) {
        case OverflowPolicy::block:
            return "block";
        case OverflowPolicy::reject:
            return "reject";
        case OverflowPolicy::drop_oldest:
            return "drop_oldest";
    }
    return "?";
}

// Runs `body` on a new thread and waits for it: a thread of its own means a shard of its own
// (threads that push one after another get consecutive shards). Catch2's assertions are not
// thread-safe, so `body` returns whether it went as expected.
template <class Body>
bool on_new_thread(Body body) {
    bool ok = false;
    std::thread([&] { ok = body(); }).join();
    return ok;
}

}  // namespace

TEST_CASE("SwapBuffer: a drain takes one thread's items, oldest shard first",
          "[swap_buffer][shards]") {
    SwapBuffer<std::uint64_t> b;
    // Threads started one after the other push into different shards.
    REQUIRE(on_new_thread([&] {
        return b.push_range(std::vector<std::uint64_t>{tag(0, 0), tag(0, 1)}) == 2;
    }));
    REQUIRE(on_new_thread([&] { return b.push(tag(1, 0)); }));
    CHECK(b.size() == 3);

    std::vector<std::uint64_t> out;
    b.drain(out);
    CHECK(out == std::vector<std::uint64_t>{tag(0, 0), tag(0, 1)});  // the older shard
    b.drain(out);
    CHECK(out == std::vector<std::uint64_t>{tag(1, 0)});
    b.drain(out);
    CHECK(out.empty());
    const SwapBufferStats s = b.stats();
    CHECK(s.drains == 2);
    CHECK(s.drained == 3);
    CHECK(s.high_water_mark == 3);  // both shards counted, though drained apart
    require_balanced(b);
}

TEST_CASE("SwapBuffer: wait_drain takes a shard holding min_items before an older one",
          "[swap_buffer][shards]") {
    SwapBuffer<std::uint64_t> b;
    REQUIRE(on_new_thread([&] { return b.push(tag(0, 0)); }));  // older, but alone
    REQUIRE(on_new_thread([&] {
        bool all = true;
        for (std::uint64_t i = 0; i < 5; ++i) {
            all = b.push(tag(1, i)) && all;
        }
        return all;
    }));
    std::vector<std::uint64_t> out;
    CHECK(b.wait_drain(out, 5, 1h));  // ready at once: no waiting for the linger
    CHECK(out == std::vector<std::uint64_t>{tag(1, 0), tag(1, 1), tag(1, 2), tag(1, 3), tag(1, 4)});
    b.close();
    CHECK(b.wait_drain(out, 5, 1h));  // closed: whatever is left, without waiting
    CHECK(out == std::vector<std::uint64_t>{tag(0, 0)});
    CHECK_FALSE(b.wait_drain(out, 5, 1h));
}

TEST_CASE("SwapBuffer: several producers: each batch holds one producer's items, in order",
          "[swap_buffer][shards]") {
    constexpr std::size_t producers = 4;
    constexpr std::uint64_t per_producer = 20000;
    SwapBuffer<std::uint64_t> b(256, OverflowPolicy::block);
    std::vector<std::uint64_t> received;
    std::size_t mixed_batches = 0;
    std::thread consumer([&] {
        std::vector<std::uint64_t> batch;
        while (b.wait_drain(batch, 64, 1ms)) {
            for (const std::uint64_t item : batch) {
                mixed_batches += (item >> 32) != (batch.front() >> 32) ? 1 : 0;
            }
            received.insert(received.end(), batch.begin(), batch.end());
        }
    });
    std::vector<std::thread> threads;
    for (std::size_t p = 0; p < producers; ++p) {
        threads.emplace_back([&b, p] {
            for (std::uint64_t seq = 0; seq < per_producer; ++seq) {
                (void)b.push(tag(p, seq));
            }
        });
    }
    for (std::thread& t : threads) {
        t.join();
    }
    b.close();
    consumer.join();
    // At most eight producers started together never share a shard.
    CHECK(mixed_batches == 0);
    const auto seqs = by_producer(received, producers);
    for (std::size_t p = 0; p < producers; ++p) {
        CHECK(seqs[p] == iota_u64(0, per_producer));
    }
    require_balanced(b);
}

TEST_CASE("SwapBuffer: more producers than shards keep their order", "[swap_buffer][shards]") {
    constexpr std::size_t producers = 12;  // eight shards: some producers share one
    constexpr std::uint64_t per_producer = 5000;
    SwapBuffer<std::uint64_t> b(64, OverflowPolicy::block);
    const Observed seen = run_mpsc(b, producers, [](SwapBuffer<std::uint64_t>& buf, std::size_t p) {
        for (std::uint64_t seq = 0; seq < per_producer; ++seq) {
            (void)buf.push(tag(p, seq));
        }
    });
    CHECK(seen.in_order);
    CHECK(seen.contiguous);
    CHECK(seen.count == std::vector<std::uint64_t>(producers, per_producer));
    CHECK(seen.largest_batch <= 64);
    CHECK(b.stats().high_water_mark <= 64);
}

TEST_CASE("SwapBuffer: full means full across shards", "[swap_buffer][shards]") {
    // Another thread's shard took a slice of the capacity as credit and went away; the room
    // it did not use must still be there for everyone else.
    SECTION("reject: exactly the capacity is accepted") {
        SwapBuffer<std::uint64_t> b(100, OverflowPolicy::reject);
        REQUIRE(on_new_thread([&] { return b.push(tag(0, 0)); }));
        std::uint64_t accepted = 0;
        while (b.try_push(tag(1, accepted))) {
            ++accepted;
        }
        CHECK(accepted == 99);
        CHECK(b.size() == 100);
        CHECK(b.stats().rejected == 1);
        CHECK(b.stats().high_water_mark == 100);
        const auto seqs = by_producer(drain_all(b), 2);
        CHECK(seqs[0] == iota_u64(0, 1));
        CHECK(seqs[1] == iota_u64(0, 99));
        require_balanced(b);
    }

    SECTION("block: try_push fills it to the last unit of weight") {
        SwapBuffer<std::string> b(50, OverflowPolicy::block, bytes);
        REQUIRE(on_new_thread([&] { return b.push("0123456789"); }));
        std::size_t accepted = 0;
        while (b.try_push(std::string(8, 'x'))) {
            ++accepted;
        }
        CHECK(accepted == 5);  // 10 + 5 * 8 = 50
        CHECK(b.weight() == 50);
        CHECK(b.try_push(std::string()));  // weighs nothing: always fits
        CHECK_FALSE(b.try_push("y"));
    }

    SECTION("after a refusal, what still fits is accepted, and a drain makes room again") {
        SwapBuffer<std::string> b(10, OverflowPolicy::reject, bytes);
        REQUIRE(on_new_thread([&] { return b.push("aaaa"); }));
        REQUIRE(b.push("bbbb"));
        CHECK_FALSE(b.push("ccc"));  // 2 left
        CHECK_FALSE(b.push("ccc"));  // (refused without looking at every shard again)
        CHECK(b.push("dd"));         // exactly the 2 left
        CHECK_FALSE(b.push("e"));
        CHECK(b.weight() == 10);
        CHECK(b.stats().rejected == 3);
        CHECK(b.drain() == std::vector<std::string>{"aaaa"});  // the other thread's shard
        CHECK(b.push("ccc"));
        CHECK(b.push("e"));
        CHECK_FALSE(b.push("e"));
        CHECK(b.drain() == std::vector<std::string>{"bbbb", "dd", "ccc", "e"});
        require_balanced(b);
    }

    SECTION("an item heavier than the capacity waits for every shard to be empty") {
        SwapBuffer<std::string> b(10, OverflowPolicy::reject, bytes);
        REQUIRE(on_new_thread([&] { return b.push("a"); }));
        const std::string huge(16, 'h');
        CHECK_FALSE(b.push(huge));  // another shard holds an item
        CHECK(b.drain() == std::vector<std::string>{"a"});
        CHECK(b.push(huge));
        CHECK(b.weight() == 16);
    }
}

TEST_CASE("SwapBuffer: close drains everything from every shard", "[swap_buffer][shards]") {
    constexpr std::size_t producers = 4;

    SECTION("items pushed before close") {
        SwapBuffer<std::uint64_t> b;
        std::vector<std::thread> threads;
        for (std::size_t p = 0; p < producers; ++p) {
            threads.emplace_back([&b, p] {
                for (std::uint64_t seq = 0; seq < 1000; ++seq) {
                    (void)b.push(tag(p, seq));  // unbounded and open: always accepted
                }
            });
        }
        for (std::thread& t : threads) {
            t.join();
        }
        b.close();
        std::vector<std::uint64_t> all;
        std::vector<std::uint64_t> batch;
        std::size_t batches = 0;
        while (b.wait_drain(batch, 1'000'000, 1h)) {  // closed: no waiting for min_items
            all.insert(all.end(), batch.begin(), batch.end());
            ++batches;
        }
        CHECK(batches == producers);
        const auto seqs = by_producer(all, producers);
        for (std::size_t p = 0; p < producers; ++p) {
            CHECK(seqs[p] == iota_u64(0, 1000));
        }
        CHECK(b.empty());
        require_balanced(b);
    }

    SECTION("close while producers push: every accepted item arrives once, refused ones never") {
        SwapBuffer<std::uint64_t> b(128, OverflowPolicy::block);
        std::vector<std::uint64_t> accepted(producers, 0);
        std::vector<std::uint64_t> received;
        std::thread consumer([&] {
            std::vector<std::uint64_t> batch;
            while (b.wait_drain(batch, 16, 1ms)) {
                received.insert(received.end(), batch.begin(), batch.end());
            }
        });
        std::atomic<std::uint64_t> pushed_total{0};
        std::vector<std::thread> threads;
        for (std::size_t p = 0; p < producers; ++p) {
            threads.emplace_back([&, p] {
                // Once one push is refused, all later ones are: accepted is a prefix.
                for (std::uint64_t seq = 0; b.push(tag(p, seq)); ++seq) {
                    ++accepted[p];
                    ++pushed_total;
                }
            });
        }
        REQUIRE(eventually([&] { return pushed_total.load() >= 20000; }));
        b.close();
        for (std::thread& t : threads) {
            t.join();
        }
        consumer.join();
        const auto seqs = by_producer(received, producers);
        for (std::size_t p = 0; p < producers; ++p) {
            CHECK(seqs[p] == iota_u64(0, accepted[p]));
        }
        const SwapBufferStats s = b.stats();
        CHECK(s.rejected == producers);
        CHECK(s.drained == s.pushed);
        require_balanced(b);
    }
}

TEST_CASE("SwapBuffer: counters stay consistent while producers and the consumer run",
          "[swap_buffer][shards]") {
    constexpr std::size_t capacity = 64;
    const auto policy =
        GENERATE(OverflowPolicy::block, OverflowPolicy::reject, OverflowPolicy::drop_oldest);
    CAPTURE(policy_name(policy));
    SwapBuffer<std::uint64_t> b(capacity, policy);
    std::atomic<bool> done{false};
    std::size_t samples = 0;
    bool consistent = true;
    std::thread watcher([&] {
        while (!done) {
            const SwapBufferStats s = b.stats();  // one snapshot of every shard
            const std::uint64_t held = s.pushed - s.drained - s.dropped;
            consistent = consistent && s.pushed >= s.drained + s.dropped && held <= capacity &&
                         s.high_water_mark <= capacity;
            ++samples;
            std::this_thread::yield();  // every shard is locked while stats() looks
        }
    });
    const Observed seen = run_mpsc(b, 3, [](SwapBuffer<std::uint64_t>& buf, std::size_t p) {
        for (std::uint64_t seq = 0; seq < 20000; ++seq) {
            (void)buf.try_push(tag(p, seq));
        }
    });
    done = true;
    watcher.join();
    CHECK(samples > 0);
    CHECK(consistent);
    CHECK(seen.in_order);
    const SwapBufferStats s = b.stats();
    CHECK(s.pushed + s.rejected == 3 * 20000);
    CHECK(s.drained == std::accumulate(seen.count.begin(), seen.count.end(), 0ULL));
    CHECK(s.drained + s.dropped == s.pushed);
    require_balanced(b);
}

TEST_CASE("SwapBuffer: drop_oldest drops the globally oldest items, counted",
          "[swap_buffer][shards]") {
    constexpr std::size_t producers = 3;
    constexpr std::uint64_t per_producer = 10000;
    SwapBuffer<std::uint64_t> b(16, OverflowPolicy::drop_oldest);
    std::vector<std::thread> threads;
    for (std::size_t p = 0; p < producers; ++p) {
        threads.emplace_back([&b, p] {
            for (std::uint64_t seq = 0; seq < per_producer; ++seq) {
                (void)b.push(tag(p, seq));  // drop_oldest always accepts
            }
        });
    }
    for (std::thread& t : threads) {
        t.join();
    }
    const SwapBufferStats s = b.stats();
    CHECK(s.pushed == producers * per_producer);
    CHECK(s.dropped == producers * per_producer - 16);
    CHECK(s.high_water_mark == 16);
    std::vector<std::uint64_t> left;
    b.drain(left);  // one shard under drop_oldest: everything
    CHECK(left.size() == 16);
    CHECK(b.empty());
    // The oldest go first in push order, so what is left of each producer is its newest
    // items: an unbroken run up to its last one.
    const auto seqs = by_producer(left, producers);
    for (std::size_t p = 0; p < producers; ++p) {
        const std::uint64_t kept = seqs[p].size();
        CHECK(seqs[p] == iota_u64(per_producer - kept, per_producer));
    }
    require_balanced(b);
}

TEST_CASE("SwapBuffer: producers blocked in different shards all resume", "[swap_buffer][shards]") {
    constexpr std::size_t producers = 3;
    SwapBuffer<std::uint64_t> b(2, OverflowPolicy::block);
    REQUIRE(b.push(tag(producers, 0)));  // the main thread's shard
    REQUIRE(b.push(tag(producers, 1)));
    std::atomic<std::size_t> refused{0};
    std::vector<std::thread> threads;
    for (std::size_t p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
            for (std::uint64_t seq = 0; seq < 3; ++seq) {
                refused += b.push(tag(p, seq)) ? 0 : 1;
            }
        });
    }
    REQUIRE(eventually([&] { return b.stats().blocked_pushes == producers; }));
    CHECK(b.size() == 2);
    std::thread closer([&] {
        for (std::thread& t : threads) {
            t.join();
        }
        b.close();
    });
    std::vector<std::uint64_t> received;
    std::size_t largest_batch = 0;
    std::vector<std::uint64_t> batch;
    while (b.wait_drain(batch, 1, 1ms)) {
        largest_batch = std::max(largest_batch, batch.size());
        received.insert(received.end(), batch.begin(), batch.end());
    }
    closer.join();
    CHECK(refused == 0);
    CHECK(largest_batch <= 2);
    const auto seqs = by_producer(received, producers + 1);
    for (std::size_t p = 0; p < producers; ++p) {
        CHECK(seqs[p] == iota_u64(0, 3));
    }
    CHECK(seqs[producers] == iota_u64(0, 2));
    CHECK(b.stats().high_water_mark <= 2);
    require_balanced(b);
}

TEST_CASE("SwapBuffer: a full buffer wakes the consumer though no shard holds min_items",
          "[swap_buffer][shards]") {
    SwapBuffer<std::uint64_t> b(8, OverflowPolicy::block);
    for (std::size_t p = 0; p < 4; ++p) {
        REQUIRE(on_new_thread([&] { return b.push(tag(p, 0)) && b.push(tag(p, 1)); }));
    }
    REQUIRE(b.size() == 8);  // four shards of two
    bool drained = false;
    std::vector<std::uint64_t> out;
    std::thread consumer([&] { drained = b.wait_drain(out, 100, 1h); });
    std::atomic<bool> pushed{false};
    std::thread producer([&] { pushed = b.push(tag(4, 0)); });  // finds it full and waits
    consumer.join();  // woken by the full buffer: no linger of an hour
    producer.join();
    CHECK(drained);
    CHECK(out == std::vector<std::uint64_t>{tag(0, 0), tag(0, 1)});  // the oldest shard
    CHECK(pushed);
    CHECK(b.stats().blocked_pushes == 1);
    const auto seqs = by_producer(drain_all(b), 5);
    for (std::size_t p = 1; p < 4; ++p) {
        CHECK(seqs[p] == iota_u64(0, 2));
    }
    CHECK(seqs[4] == iota_u64(0, 1));
    require_balanced(b);
}

TEST_CASE("SwapBuffer: reserve covers every shard", "[swap_buffer][shards]") {
    AllocLog log;
    const CountingAllocator<std::uint64_t> alloc(&log);
    using Buffer = SwapBuffer<std::uint64_t, CountingAllocator<std::uint64_t>>;
    Buffer b(Buffer::unbounded, OverflowPolicy::block, alloc);
    b.reserve(100);
    Buffer::batch_type out(alloc);
    out.reserve(100);
    const std::size_t warm = log.allocations;
    for (std::size_t round = 0; round < 3; ++round) {
        std::vector<std::thread> threads;
        for (std::size_t p = 0; p < 3; ++p) {
            threads.emplace_back([&b, p] {
                for (std::uint64_t seq = 0; seq < 100; ++seq) {
                    (void)b.push(tag(p, seq));  // unbounded and open: always accepted
                }
            });
        }
        for (std::thread& t : threads) {
            t.join();
        }
        std::size_t received = 0;
        for (b.drain(out); !out.empty(); b.drain(out)) {
            received += out.size();
        }
        CHECK(received == 300);
    }
    CHECK(log.allocations == warm);
}
