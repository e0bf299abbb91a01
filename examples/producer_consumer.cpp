// Four producer threads push numbered events into a bounded SwapBuffer; one consumer wakes
// once 1024 events are waiting (or 5 ms after the first one arrived), takes everything there
// in one batch, and checks that every event arrived exactly once, in order per producer.
// Exits 1 if not.
#include <snaptail/swap_buffer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <stop_token>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace {

struct Event {
    std::uint32_t producer;
    std::uint32_t seq;  // 0, 1, 2, ... per producer
};

}  // namespace

int main() {
    using namespace std::chrono_literals;
    constexpr std::uint32_t producers = 4;
    constexpr std::uint32_t events_per_producer = 250'000;
    constexpr std::uint64_t total = std::uint64_t{producers} * events_per_producer;
    constexpr std::size_t capacity = 4096;
    constexpr std::size_t batch_items = 1024;
    constexpr auto linger = 5ms;

    // Bounded with block: when the consumer falls behind, producers wait instead of letting
    // memory grow.
    snaptail::SwapBuffer<Event> buffer(capacity, snaptail::OverflowPolicy::block);

    fmt::print("{} producers x {} events -> one consumer\n", producers, events_per_producer);
    fmt::print(
        "buffer capacity {} events (producers wait when it is full); the consumer wakes "
        "once {} events are waiting, or {} ms after the first, and takes what one producer put "
        "there\n\n",
        capacity, batch_items, linger.count());

    std::vector<std::uint32_t> next_seq(producers, 0);  // what each producer sends next
    std::uint64_t received = 0;
    std::uint64_t out_of_place = 0;  // missing, duplicated or reordered
    std::uint64_t batches = 0;
    std::size_t largest_batch = 0;

    std::jthread consumer([&](std::stop_token stop) {
        snaptail::SwapBuffer<Event>::batch_type batch;  // recycled: no allocation once grown
        while (buffer.wait_drain(batch, batch_items, linger, stop)) {
            ++batches;
            largest_batch = std::max(largest_batch, batch.size());
            for (const Event& e : batch) {
                if (e.producer >= producers || e.seq != next_seq[e.producer]) {
                    ++out_of_place;
                } else {
                    ++next_seq[e.producer];
                }
            }
            received += batch.size();
            // Stand-in for writing the batch somewhere slow, so the buffer fills at times.
            std::this_thread::sleep_for(100us);
        }
    });

    const auto start = std::chrono::steady_clock::now();
    {
        std::vector<std::jthread> threads;
        for (std::uint32_t p = 0; p < producers; ++p) {
            threads.emplace_back([&buffer, p] {
                for (std::uint32_t seq = 0; seq < events_per_producer; ++seq) {
                    buffer.push(Event{p, seq});
                }
            });
        }
    }                // producers joined
    buffer.close();  // the consumer drains what is left, then wait_drain returns false
    consumer.join();
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;

    const snaptail::SwapBufferStats stats = buffer.stats();
    fmt::print(
        "consumer received {} events in {} batches (average {:.0f}, largest {}) in "
        "{:.2f} s\n",
        received, batches, batches != 0 ? double(received) / double(batches) : 0.0, largest_batch,
        elapsed.count());
    fmt::print("high-water mark: {} of {} events; producers had to wait {} times\n",
               stats.high_water_mark, capacity, stats.blocked_pushes);
    fmt::print("stats: {}\n\n", stats);

    bool all_there = out_of_place == 0 && received == total && stats.drained == total &&
                     stats.rejected == 0 && stats.dropped == 0;
    for (const std::uint32_t n : next_seq) {
        all_there = all_there && n == events_per_producer;
    }
    if (!all_there) {
        fmt::print("FAILED: expected {} events exactly once in order, got {} ({} out of place)\n",
                   total, received, out_of_place);
        return 1;
    }
    fmt::print("OK: all {} events arrived exactly once, in order per producer\n", total);
    return 0;
}
