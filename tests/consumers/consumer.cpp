// A consumer's first program: one producer thread, one draining consumer.
#include <snaptail/snaptail.hpp>

#include <fmt/format.h>

#include <chrono>
#include <thread>

int main() {
    snaptail::SwapBuffer<int> buffer(64, snaptail::OverflowPolicy::block);
    constexpr int item_count = 10'000;
    std::thread producer([&] {
        for (int i = 0; i < item_count; ++i) {
            buffer.push(i);
        }
        buffer.close();
    });

    snaptail::SwapBuffer<int>::batch_type batch;
    int expected = 0;
    while (buffer.wait_drain(batch, 256, std::chrono::milliseconds(5))) {
        for (int value : batch) {
            if (value != expected) {
                fmt::print(stderr, "consumer: got {} where {} was expected\n", value, expected);
                return 1;
            }
            ++expected;
        }
    }
    producer.join();
    if (expected != item_count) {
        fmt::print(stderr, "consumer: received {} of {} items\n", expected, item_count);
        return 1;
    }
    fmt::print("consumer: {} items received in order\n", expected);
    return 0;
}
