// Throughput of SwapBuffer from 1, 2 and 4 producers to one batch-draining consumer, against
// a std::mutex + std::deque queue and, if available, moodycamel::BlockingConcurrentQueue.
//
// Every consumer takes items in batches:
//   snaptail     wait_drain(batch, 4096 items or 1 ms linger), capacity 65536 with block;
//   mutex+deque  waits on a condition variable, then moves every queued item out under the
//                lock (producers notify_one per push); unbounded;
//   moodycamel   wait_dequeue_bulk of up to 4096, producers with a ProducerToken; unbounded.
// Each run times from the release of all threads to the consumer's last item, and checks the
// count and a checksum. A round runs the three one after the other, so that a disturbance of
// the shared machine hits all of them alike; the table shows the median over the rounds of
// each one's rate and of the per-round ratios.
// Usage: bench_swap_buffer [--items N] [--rounds R] [--producers P] (P = 0: 1, 2 and 4)
#include <snaptail/swap_buffer.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iterator>
#include <latch>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#ifdef SNAPTAIL_HAVE_MOODYCAMEL
#include <blockingconcurrentqueue.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t batch_items = 4096;

struct Payload64 {
    std::array<std::uint64_t, 8> words;
};
static_assert(sizeof(Payload64) == 64);

template <class T>
T make_item(std::uint64_t i) {
    if constexpr (std::is_same_v<T, long>) {
        return static_cast<long>(i);
    } else {
        return Payload64{{i, i, i, i, i, i, i, i}};
    }
}

template <class T>
std::uint64_t key_of(const T& item) {
    if constexpr (std::is_same_v<T, long>) {
        return static_cast<std::uint64_t>(item);
    } else {
        return item.words[0] + item.words[7] - item.words[3];
    }
}

struct Consumed {
    std::uint64_t items = 0;
    std::uint64_t checksum = 0;

    template <class It>
    void take(It first, It last) {
        for (; first != last; ++first) {
            checksum += key_of(*first);
            ++items;
        }
    }
};

// Starts `producers` threads running produce(p, first, count) and one running consume(),
// releases them together, and returns the seconds from the first thread's start to the end of
// consume(). Each thread reads the clock itself: the main thread may be descheduled.
template <class Produce, class Consume>
double timed_run(std::size_t producers, std::uint64_t per_producer, Produce produce,
                 Consume consume) {
    std::latch ready(static_cast<std::ptrdiff_t>(producers + 1));
    std::vector<Clock::time_point> starts(producers + 1);
    Clock::time_point end;
    std::vector<std::thread> threads;
    threads.emplace_back([&] {
        ready.arrive_and_wait();
        starts[0] = Clock::now();
        consume();
        end = Clock::now();
    });
    for (std::size_t p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
            ready.arrive_and_wait();
            starts[p + 1] = Clock::now();
            produce(p, p * per_producer, per_producer);
        });
    }
    for (std::thread& t : threads) {
        t.join();
    }
    const Clock::time_point start = *std::min_element(starts.begin(), starts.end());
    return std::chrono::duration<double>(end - start).count();
}

template <class T>
double run_snaptail(std::size_t producers, std::uint64_t per_producer, Consumed& out) {
    snaptail::SwapBuffer<T> buffer(65536, snaptail::OverflowPolicy::block);
    std::atomic<std::size_t> running{producers};
    return timed_run(
        producers, per_producer,
        [&](std::size_t, std::uint64_t first, std::uint64_t count) {
            for (std::uint64_t i = first; i < first + count; ++i) {
                buffer.push(make_item<T>(i));
            }
            if (--running == 0) {
                buffer.close();
            }
        },
        [&] {
            typename snaptail::SwapBuffer<T>::batch_type batch;
            while (buffer.wait_drain(batch, batch_items, std::chrono::milliseconds(1))) {
                out.take(batch.begin(), batch.end());
            }
        });
}

template <class T>
class MutexDeque {
  public:
    void push(T item) {
        {
            std::lock_guard lock(mutex_);
            items_.push_back(std::move(item));
        }
        ready_.notify_one();
    }
    void close() {
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
        }
        ready_.notify_one();
    }
    // Moves every queued item into `out`; false once closed and empty.
    bool pop_all(std::vector<T>& out) {
        out.clear();
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return closed_ || !items_.empty(); });
        out.assign(std::make_move_iterator(items_.begin()), std::make_move_iterator(items_.end()));
        items_.clear();
        return !out.empty();
    }

  private:
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<T> items_;
    bool closed_ = false;
};

template <class T>
double run_mutex_deque(std::size_t producers, std::uint64_t per_producer, Consumed& out) {
    MutexDeque<T> queue;
    std::atomic<std::size_t> running{producers};
    return timed_run(
        producers, per_producer,
        [&](std::size_t, std::uint64_t first, std::uint64_t count) {
            for (std::uint64_t i = first; i < first + count; ++i) {
                queue.push(make_item<T>(i));
            }
            if (--running == 0) {
                queue.close();
            }
        },
        [&] {
            std::vector<T> batch;
            while (queue.pop_all(batch)) {
                out.take(batch.begin(), batch.end());
            }
        });
}

#ifdef SNAPTAIL_HAVE_MOODYCAMEL
template <class T>
double run_moodycamel(std::size_t producers, std::uint64_t per_producer, Consumed& out) {
    moodycamel::BlockingConcurrentQueue<T> queue;
    const std::uint64_t total = producers * per_producer;
    return timed_run(
        producers, per_producer,
        [&](std::size_t, std::uint64_t first, std::uint64_t count) {
            moodycamel::ProducerToken token(queue);
            for (std::uint64_t i = first; i < first + count; ++i) {
                queue.enqueue(token, make_item<T>(i));
            }
        },
        [&] {
            moodycamel::ConsumerToken token(queue);
            std::vector<T> batch(batch_items);
            while (out.items < total) {  // no close(): the consumer counts
                const std::size_t n = queue.wait_dequeue_bulk(token, batch.begin(), batch.size());
                out.take(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(n));
            }
        });
}
#endif

using Runner = double (*)(std::size_t, std::uint64_t, Consumed&);

// Items per second of one run. Exits if it lost or duplicated an item.
double rate(std::string_view name, Runner run, std::size_t producers, std::uint64_t items) {
    const std::uint64_t per_producer = items / producers;
    const std::uint64_t total = per_producer * producers;
    const std::uint64_t expected_checksum = total * (total - 1) / 2;
    Consumed consumed;
    const double seconds = run(producers, per_producer, consumed);
    if (consumed.items != total || consumed.checksum != expected_checksum) {
        fmt::print(stderr, "{}: received {} items (checksum {}), expected {} ({})\n", name,
                   consumed.items, consumed.checksum, total, expected_checksum);
        std::exit(1);
    }
    return static_cast<double>(total) / seconds;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// A positive integer, or 0 if `text` is not one.
std::uint64_t parse_count(const char* text) {
    char* end = nullptr;
    const unsigned long long value = std::strtoull(text, &end, 10);
    return end == text || *end != '\0' ? 0 : value;
}

template <class T>
void bench_type(std::string_view type_name, std::uint64_t items, int rounds,
                const std::vector<std::size_t>& producer_counts) {
    for (const std::size_t producers : producer_counts) {
        std::vector<double> snap;
        std::vector<double> deque;
        std::vector<double> moody;
        std::vector<double> snap_deque;
        std::vector<double> snap_moody;
        for (int r = 0; r < rounds; ++r) {
            snap.push_back(rate("snaptail", run_snaptail<T>, producers, items));
            deque.push_back(rate("mutex+deque", run_mutex_deque<T>, producers, items));
            snap_deque.push_back(snap.back() / deque.back());
#ifdef SNAPTAIL_HAVE_MOODYCAMEL
            moody.push_back(rate("moodycamel", run_moodycamel<T>, producers, items));
            snap_moody.push_back(snap.back() / moody.back());
#endif
        }
        std::string moody_rate = "-";
        std::string moody_ratio = "-";
        if (!moody.empty()) {
            moody_rate = fmt::format("{:.1f}", median(moody) / 1e6);
            moody_ratio = fmt::format("{:.2f}x", median(snap_moody));
        }
        fmt::print("{:<10} {:>9} {:>10} {:>14.1f} {:>14.1f} {:>14} {:>15.2f}x {:>15}\n", type_name,
                   producers, items, median(snap) / 1e6, median(deque) / 1e6, moody_rate,
                   median(snap_deque), moody_ratio);
    }
}

// The data and unified caches of CPU 0, from sysfs (sysconf's figures are wrong on some VMs).
std::string cache_sizes() {
    std::string out;
    for (int i = 0; i < 8; ++i) {
        const std::string dir = fmt::format("/sys/devices/system/cpu/cpu0/cache/index{}/", i);
        std::ifstream level(dir + "level");
        std::ifstream type(dir + "type");
        std::ifstream size(dir + "size");
        std::string l;
        std::string t;
        std::string s;
        if (!(level >> l) || !(type >> t) || !(size >> s)) {
            break;
        }
        if (t != "Instruction") {
            out += fmt::format("{}L{} {}", out.empty() ? "" : ", ", l, s);
        }
    }
    if (out.empty()) {
        out = fmt::format("L1d {}, L2 {}, L3 {} (sysconf)", sysconf(_SC_LEVEL1_DCACHE_SIZE),
                          sysconf(_SC_LEVEL2_CACHE_SIZE), sysconf(_SC_LEVEL3_CACHE_SIZE));
    }
    return out;
}

std::string load_average() {
    std::ifstream in("/proc/loadavg");
    std::string one;
    std::string five;
    return in >> one >> five ? fmt::format("{} (1 min), {} (5 min)", one, five) : "unknown";
}

}  // namespace

int main(int argc, char** argv) {
    std::uint64_t items = 10'000'000;
    int rounds = 7;
    std::vector<std::size_t> producer_counts{1, 2, 4};
    for (int i = 1; i < argc; i += 2) {  // options come in pairs: --name value
        const std::string_view arg = argv[i];
        const std::uint64_t value = i + 1 < argc ? parse_count(argv[i + 1]) : 0;
        if (arg == "--items" && value != 0) {
            items = value;
        } else if ((arg == "--rounds" || arg == "--reps") && value != 0 && value < 100) {
            rounds = static_cast<int>(value);
        } else if (arg == "--producers" && value != 0 && value <= 64) {
            producer_counts = {static_cast<std::size_t>(value)};
        } else {
            fmt::print(stderr, "usage: {} [--items N] [--rounds R] [--producers P]\n", argv[0]);
            return 2;
        }
    }

    fmt::print(
        "SwapBuffer throughput, one batch-draining consumer; million items/s, median of {} "
        "rounds (each round runs all three); {} hardware threads; caches {}; load average {}\n",
        rounds, std::thread::hardware_concurrency(), cache_sizes(), load_average());
    fmt::print(
        "consumers: snaptail wait_drain({} items or 1 ms), capacity 65536, block | "
        "mutex+deque moves all queued items out under the lock | moodycamel "
        "wait_dequeue_bulk({}) with tokens; ratios are medians of the per-round ratios\n\n",
        batch_items, batch_items);
    fmt::print("{:<10} {:>9} {:>10} {:>14} {:>14} {:>14} {:>16} {:>15}\n", "item", "producers",
               "items", "snaptail", "mutex+deque", "moodycamel", "snap/deque", "snap/moody");
    bench_type<long>("long", items, rounds, producer_counts);
    bench_type<Payload64>("64-byte", std::max<std::uint64_t>(items / 4, 4), rounds,
                          producer_counts);
    fmt::print("\nload average after: {}\n", load_average());
#ifndef SNAPTAIL_HAVE_MOODYCAMEL
    fmt::print("\n(moodycamel::ConcurrentQueue not found at build time: column skipped)\n");
#endif
    return 0;
}
