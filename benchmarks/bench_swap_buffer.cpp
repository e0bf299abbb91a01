// Throughput of SwapBuffer from 1, 2 and 4 producers to one batch-draining consumer, against
// a std::mutex + std::deque queue and, if available, moodycamel::BlockingConcurrentQueue.
//
// Every consumer takes items in batches:
//   snaptail     wait_drain(batch, 4096 items or 1 ms linger), capacity 65536 with block;
//   mutex+deque  waits on a condition variable, then moves every queued item out under the
//                lock (producers notify_one per push); unbounded;
//   moodycamel   wait_dequeue_bulk of up to 4096, producers with a ProducerToken; unbounded.
// Each run times from the release of all threads to the consumer's last item, and checks the
// count and a checksum, and takes the CPU time of all the process's threads (the steadier
// figure on a shared machine). A round runs the three one after the other, so that a
// disturbance hits all of them alike; the tables show the median over the rounds of each
// one's figure and of the per-round ratios.
// Then the policies under overload: a consumer slower than the producers, 1024 items of room.
// Usage: bench_swap_buffer [--items N] [--rounds R] [--producers P] (default: 1, 2 and 4)
#include <snaptail/swap_buffer.hpp>

#include <sys/resource.h>
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

// CPU time of every thread of this process so far, in seconds.
double process_cpu_seconds() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const auto seconds = [](const timeval& tv) {
        return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
    };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

struct Measured {
    double items_per_second = 0;
    double cpu_ns_per_item = 0;  // all threads: producers, consumer, waiting
};

// One run. Exits if it lost or duplicated an item.
Measured measure(std::string_view name, Runner run, std::size_t producers, std::uint64_t items) {
    const std::uint64_t per_producer = items / producers;
    const std::uint64_t total = per_producer * producers;
    const std::uint64_t expected_checksum = total * (total - 1) / 2;
    Consumed consumed;
    const double cpu_before = process_cpu_seconds();
    const double seconds = run(producers, per_producer, consumed);
    const double cpu = process_cpu_seconds() - cpu_before;
    if (consumed.items != total || consumed.checksum != expected_checksum) {
        fmt::print(stderr, "{}: received {} items (checksum {}), expected {} ({})\n", name,
                   consumed.items, consumed.checksum, total, expected_checksum);
        std::exit(1);
    }
    const auto n = static_cast<double>(total);
    return {n / seconds, cpu * 1e9 / n};
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

struct Row {
    std::string label;            // item type, producers, items
    std::vector<double> rate[3];  // per round: snaptail, mutex+deque, moodycamel
    std::vector<double> cpu[3];
    std::vector<double> rate_ratio[2];  // snaptail / mutex+deque, snaptail / moodycamel
    std::vector<double> cpu_ratio[2];   // the other queue's CPU time / snaptail's
};

template <class T>
void bench_type(std::string_view type_name, std::uint64_t items, int rounds,
                const std::vector<std::size_t>& producer_counts, std::vector<Row>& rows) {
    constexpr std::array<std::string_view, 3> names{"snaptail", "mutex+deque", "moodycamel"};
    constexpr std::array<Runner, 3> runners{run_snaptail<T>, run_mutex_deque<T>,
#ifdef SNAPTAIL_HAVE_MOODYCAMEL
                                            run_moodycamel<T>
#else
                                            nullptr
#endif
    };
    for (const std::size_t producers : producer_counts) {
        Row row;
        row.label = fmt::format("{:<10} {:>9} {:>10}", type_name, producers, items);
        for (int r = 0; r < rounds; ++r) {
            std::array<Measured, 3> m{};
            for (std::size_t q = 0; q < runners.size(); ++q) {
                if (runners[q] != nullptr) {
                    m[q] = measure(names[q], runners[q], producers, items);
                    row.rate[q].push_back(m[q].items_per_second);
                    row.cpu[q].push_back(m[q].cpu_ns_per_item);
                }
            }
            for (std::size_t q = 1; q < runners.size(); ++q) {
                if (runners[q] != nullptr) {
                    row.rate_ratio[q - 1].push_back(m[0].items_per_second / m[q].items_per_second);
                    row.cpu_ratio[q - 1].push_back(m[q].cpu_ns_per_item / m[0].cpu_ns_per_item);
                }
            }
        }
        rows.push_back(std::move(row));
    }
}

std::string cell(const std::vector<double>& v, double scale, std::string_view suffix = "") {
    return v.empty() ? std::string("-") : fmt::format("{:.2f}{}", median(v) * scale, suffix);
}

void print_rows(const std::vector<Row>& rows) {
    fmt::print("throughput, million items/s (wall clock)\n");
    fmt::print("{:<10} {:>9} {:>10} {:>12} {:>12} {:>12} {:>11} {:>11}\n", "item", "producers",
               "items", "snaptail", "mutex+deque", "moodycamel", "x deque", "x moody");
    for (const Row& row : rows) {
        fmt::print("{} {:>12} {:>12} {:>12} {:>11} {:>11}\n", row.label, cell(row.rate[0], 1e-6),
                   cell(row.rate[1], 1e-6), cell(row.rate[2], 1e-6),
                   cell(row.rate_ratio[0], 1, "x"), cell(row.rate_ratio[1], 1, "x"));
    }
    fmt::print("\nCPU time, ns per item (all threads of the process; less is better)\n");
    fmt::print("{:<10} {:>9} {:>10} {:>12} {:>12} {:>12} {:>11} {:>11}\n", "item", "producers",
               "items", "snaptail", "mutex+deque", "moodycamel", "x deque", "x moody");
    for (const Row& row : rows) {
        fmt::print("{} {:>12} {:>12} {:>12} {:>11} {:>11}\n", row.label, cell(row.cpu[0], 1),
                   cell(row.cpu[1], 1), cell(row.cpu[2], 1), cell(row.cpu_ratio[0], 1, "x"),
                   cell(row.cpu_ratio[1], 1, "x"));
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

// Overload: a consumer slower than the producers (it spends `consumer_ns` per item), a small
// bounded SwapBuffer, and each policy doing its work on every push: reject refusing (try_push),
// drop_oldest dropping, block waiting. Returns items offered per second and the CPU time per
// item offered; checks that every item was drained, dropped or rejected.
struct Overload {
    double offered_per_second = 0;
    double cpu_ns_per_item = 0;
    double drained_share = 0;
};

Overload run_overload(snaptail::OverflowPolicy policy, std::size_t producers,
                      std::uint64_t per_producer, double consumer_ns) {
    snaptail::SwapBuffer<long> buffer(1024, policy);
    std::atomic<std::size_t> running{producers};
    std::uint64_t drained = 0;
    const double cpu_before = process_cpu_seconds();
    const double seconds = timed_run(
        producers, per_producer,
        [&](std::size_t, std::uint64_t first, std::uint64_t count) {
            for (std::uint64_t i = first; i < first + count; ++i) {
                if (policy == snaptail::OverflowPolicy::reject) {
                    (void)buffer.try_push(make_item<long>(i));
                } else {
                    buffer.push(make_item<long>(i));
                }
            }
            if (--running == 0) {
                buffer.close();
            }
        },
        [&] {
            snaptail::SwapBuffer<long>::batch_type batch;
            while (buffer.wait_drain(batch, 256, std::chrono::milliseconds(1))) {
                drained += batch.size();
                const auto until =
                    Clock::now() + std::chrono::nanoseconds(static_cast<std::int64_t>(
                                       consumer_ns * static_cast<double>(batch.size())));
                while (Clock::now() < until) {
                }
            }
        });
    const double cpu = process_cpu_seconds() - cpu_before;
    const snaptail::SwapBufferStats stats = buffer.stats();
    const std::uint64_t offered = per_producer * producers;
    if (stats.drained != drained || stats.pushed + stats.rejected != offered ||
        stats.pushed != stats.drained + stats.dropped) {
        fmt::print(stderr, "overload: counters do not add up: {}\n", stats);
        std::exit(1);
    }
    const auto n = static_cast<double>(offered);
    return {n / seconds, cpu * 1e9 / n, static_cast<double>(drained) / n};
}

void bench_overload(std::uint64_t items, int rounds,
                    const std::vector<std::size_t>& producer_counts) {
    constexpr double consumer_ns = 50;  // at most 20 million items/s
    fmt::print(
        "\noverload: SwapBuffer<long>(1024, policy), consumer wait_drain(256 items or 1 ms) "
        "spending {:.0f} ns per item; million items offered/s and CPU ns per item offered\n",
        consumer_ns);
    fmt::print("{:<12} {:>9} {:>10} {:>12} {:>12} {:>10}\n", "policy", "producers", "items",
               "offered/s", "CPU ns/item", "drained");
    using snaptail::OverflowPolicy;
    for (const auto& [policy, name] :
         {std::pair{OverflowPolicy::block, "block"}, std::pair{OverflowPolicy::reject, "reject"},
          std::pair{OverflowPolicy::drop_oldest, "drop_oldest"}}) {
        for (const std::size_t producers : producer_counts) {
            std::vector<double> rate;
            std::vector<double> cpu;
            std::vector<double> share;
            for (int r = 0; r < rounds; ++r) {
                const Overload o = run_overload(policy, producers, items / producers, consumer_ns);
                rate.push_back(o.offered_per_second);
                cpu.push_back(o.cpu_ns_per_item);
                share.push_back(o.drained_share);
            }
            fmt::print("{:<12} {:>9} {:>10} {:>12.2f} {:>12.2f} {:>9.1f}%\n", name, producers,
                       items / producers * producers, median(rate) / 1e6, median(cpu),
                       median(share) * 100);
        }
    }
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
        "SwapBuffer against two queues, one batch-draining consumer; median of {} rounds (each "
        "round runs all three); {} hardware threads; caches {}; load average {}\n",
        rounds, std::thread::hardware_concurrency(), cache_sizes(), load_average());
    fmt::print(
        "consumers: snaptail wait_drain({} items or 1 ms), capacity 65536, block | "
        "mutex+deque moves all queued items out under the lock | moodycamel "
        "wait_dequeue_bulk({}) with tokens; ratios (snaptail's advantage) are medians of the "
        "per-round ratios\n\n",
        batch_items, batch_items);
    std::vector<Row> rows;
    bench_type<long>("long", items, rounds, producer_counts, rows);
    bench_type<Payload64>("64-byte", std::max<std::uint64_t>(items / 4, 4), rounds, producer_counts,
                          rows);
    print_rows(rows);
    bench_overload(std::max<std::uint64_t>(items / 4, 4), rounds, producer_counts);
    fmt::print("\nload average after: {}\n", load_average());
#ifndef SNAPTAIL_HAVE_MOODYCAMEL
    fmt::print("\n(moodycamel::ConcurrentQueue not found at build time: column skipped)\n");
#endif
    return 0;
}
