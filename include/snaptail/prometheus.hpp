// A tailer's and a SwapBuffer's counters in the Prometheus text exposition format (0.0.4), and
// writing such a file atomically for node_exporter's textfile collector. Needs only fmt.
//
//     std::string text;
//     snaptail::write_prometheus(text, tailer.stats(), {{"log", "orders"}});
//     snaptail::write_file_atomically("/var/lib/node_exporter/snaptail.prom", text);
#pragma once

#include <snaptail/detail/atomic_file.hpp>
#include <snaptail/swap_buffer.hpp>
#include <snaptail/tailer_stats.hpp>

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace snaptail {

/// Label names and values put on every sample, e.g. {{"log", "orders"}, {"host", "web1"}}.
using PrometheusLabels = std::vector<std::pair<std::string, std::string>>;

/// One tailer's (or buffer's) counters and the labels that tell it apart from others.
template <class Stats>
struct PrometheusSeries {
    Stats stats;              ///< TailerStats or SwapBufferStats.
    PrometheusLabels labels;  ///< Put on each of its samples.
};

namespace detail {

template <class Stats>
struct PrometheusMetric {
    std::string_view name;  // without the snaptail_ prefix; counters end in _total
    std::string_view type;  // "counter" or "gauge"
    std::string_view help;
    std::uint64_t (*value)(const Stats&);
};

#define SNAPTAIL_METRIC(Stats, name, type, help, expr)                         \
    PrometheusMetric<Stats> {                                                  \
        name, type, help, [](const Stats& s) -> std::uint64_t { return expr; } \
    }

inline constexpr PrometheusMetric<TailerStats> tailer_metrics[] = {
    SNAPTAIL_METRIC(TailerStats, "lines_total", "counter",
                    "Lines read (ended by a newline, or final lines of retired files).", s.lines),
    SNAPTAIL_METRIC(TailerStats, "bytes_total", "counter", "Bytes consumed from files.", s.bytes),
    SNAPTAIL_METRIC(TailerStats, "records_total", "counter", "Records delivered to the sink.",
                    s.records),
    SNAPTAIL_METRIC(TailerStats, "filtered_lines_total", "counter",
                    "Lines the parser dropped (nullopt).", s.filtered),
    SNAPTAIL_METRIC(TailerStats, "parse_errors_total", "counter", "Lines whose parse threw.",
                    s.parse_errors),
    SNAPTAIL_METRIC(TailerStats, "long_lines_total", "counter",
                    "Lines longer than max_line_bytes (truncated, skipped or split).",
                    s.long_lines),
    SNAPTAIL_METRIC(TailerStats, "batches_total", "counter", "Batches the sink accepted.",
                    s.batches),
    SNAPTAIL_METRIC(TailerStats, "sink_errors_total", "counter",
                    "Times the sink threw (each batch is retried).", s.sink_errors),
    SNAPTAIL_METRIC(TailerStats, "skipped_batches_total", "counter",
                    "Batches given up after sink_max_attempts.", s.skipped_batches),
    SNAPTAIL_METRIC(TailerStats, "skipped_records_total", "counter",
                    "Records in the batches given up.", s.skipped_records),
    SNAPTAIL_METRIC(TailerStats, "rotations_total", "counter",
                    "Files retired because the path named another file or none.", s.rotations),
    SNAPTAIL_METRIC(TailerStats, "truncations_total", "counter",
                    "Times a file shrank below the read offset.", s.truncations),
    SNAPTAIL_METRIC(TailerStats, "io_errors_total", "counter",
                    "Failed opens and reads (each retried).", s.io_errors),
    SNAPTAIL_METRIC(TailerStats, "commits_total", "counter", "Checkpoints written.", s.commits),
    SNAPTAIL_METRIC(TailerStats, "checkpoint_errors_total", "counter",
                    "Checkpoint writes that failed (retried at the next batch).",
                    s.checkpoint_errors),
    SNAPTAIL_METRIC(TailerStats, "parallel_reads_total", "counter",
                    "Stretches of a backlog read by all parse threads at once.", s.parallel_reads),
    SNAPTAIL_METRIC(TailerStats, "files_found_total", "counter",
                    "Files that appeared since the start.", s.files_found),
    SNAPTAIL_METRIC(TailerStats, "files_done_total", "counter",
                    "Files read to their end and left for a newer one.", s.files_done),
    SNAPTAIL_METRIC(TailerStats, "files_lost_total", "counter",
                    "Files gone before they were read to their end.", s.files_lost),
    SNAPTAIL_METRIC(TailerStats, "files_closed_idle_total", "counter",
                    "Descriptors closed to stay within the open-file limit.", s.files_closed_idle),
    SNAPTAIL_METRIC(TailerStats, "file_open", "gauge", "1 while a file is open, else 0.",
                    s.file_open ? 1 : 0),
    SNAPTAIL_METRIC(TailerStats, "waiting_for_path", "gauge",
                    "1 while no file is open because the path does not exist, else 0.",
                    s.waiting_for_path ? 1 : 0),
    SNAPTAIL_METRIC(TailerStats, "files", "gauge", "Files being followed.", s.files),
    SNAPTAIL_METRIC(TailerStats, "offset_bytes", "gauge",
                    "Offset just past the last delivered line of the current file.", s.offset),
    SNAPTAIL_METRIC(TailerStats, "lag_bytes", "gauge",
                    "File size minus the delivered offset, at the last check.", s.lag),
    SNAPTAIL_METRIC(TailerStats, "pending_bytes", "gauge",
                    "Bytes read but not yet delivered (an incomplete line included).",
                    s.pending_bytes),
    SNAPTAIL_METRIC(TailerStats, "read_ahead_high_water_bytes", "gauge",
                    "Most bytes ever held read but undelivered.", s.read_ahead_high_water),
    SNAPTAIL_METRIC(TailerStats, "budget_high_water_bytes", "gauge",
                    "Most bytes of read windows lent at once (at most read_ahead_bytes).",
                    s.budget_high_water),
    SNAPTAIL_METRIC(TailerStats, "budget_waits_total", "counter",
                    "Reads put off because every window of the read-ahead budget was lent.",
                    s.budget_waits),
};

inline constexpr PrometheusMetric<SwapBufferStats> swap_buffer_metrics[] = {
    SNAPTAIL_METRIC(SwapBufferStats, "swap_buffer_pushed_total", "counter", "Items accepted.",
                    s.pushed),
    SNAPTAIL_METRIC(SwapBufferStats, "swap_buffer_drained_total", "counter",
                    "Items handed to the consumer.", s.drained),
    SNAPTAIL_METRIC(SwapBufferStats, "swap_buffer_rejected_total", "counter",
                    "Items refused (full or closed).", s.rejected),
    SNAPTAIL_METRIC(SwapBufferStats, "swap_buffer_dropped_total", "counter",
                    "Accepted items discarded by drop_oldest.", s.dropped),
    SNAPTAIL_METRIC(SwapBufferStats, "swap_buffer_drains_total", "counter",
                    "Drains that handed over at least one item.", s.drains),
    SNAPTAIL_METRIC(SwapBufferStats, "swap_buffer_blocked_pushes_total", "counter",
                    "Pushes that had to wait for room.", s.blocked_pushes),
    SNAPTAIL_METRIC(SwapBufferStats, "swap_buffer_high_water_mark", "gauge",
                    "Largest weight held at once, in capacity units.", s.high_water_mark),
};

#undef SNAPTAIL_METRIC

inline bool valid_label_name(std::string_view name) noexcept {
    if (name.empty() || name.starts_with("__")) {
        return false;
    }
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!letter && !(i > 0 && c >= '0' && c <= '9')) {
            return false;
        }
    }
    return true;
}

// Label values escape backslash, double quote and newline; HELP text backslash and newline.
inline void append_escaped(std::string& out, std::string_view text, bool quote) {
    for (char c : text) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (quote && c == '"') {
            out += "\\\"";
        } else {
            out += c;
        }
    }
}

inline std::string label_set(const PrometheusLabels& labels) {
    if (labels.empty()) {
        return {};
    }
    std::string out = "{";
    for (std::size_t i = 0; i < labels.size(); ++i) {
        const auto& [name, value] = labels[i];
        if (!valid_label_name(name)) {
            throw std::invalid_argument(
                fmt::format("snaptail::write_prometheus: '{}' is not a Prometheus label name "
                            "([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
                            name));
        }
        out += i == 0 ? "" : ",";
        out += name;
        out += "=\"";
        append_escaped(out, value, true);
        out += '"';
    }
    out += '}';
    return out;
}

template <class Stats, std::size_t N>
void write_families(std::string& out, const PrometheusMetric<Stats> (&metrics)[N],
                    std::span<const PrometheusSeries<Stats>> series) {
    std::vector<std::string> label_sets;
    label_sets.reserve(series.size());
    for (const auto& one : series) {
        label_sets.push_back(label_set(one.labels));
    }
    auto it = std::back_inserter(out);
    for (const auto& metric : metrics) {
        fmt::format_to(it, "# HELP snaptail_{} ", metric.name);
        append_escaped(out, metric.help, false);
        fmt::format_to(it, "\n# TYPE snaptail_{} {}\n", metric.name, metric.type);
        for (std::size_t i = 0; i < series.size(); ++i) {
            fmt::format_to(it, "snaptail_{}{} {}\n", metric.name, label_sets[i],
                           metric.value(series[i].stats));
        }
    }
}

}  // namespace detail

/// Appends the counters of several tailers to `out` in the Prometheus text format: each metric
/// family once (HELP, TYPE), one sample per tailer with its labels. Counters are named
/// snaptail_<counter>_total, gauges (lag, pending bytes, offset...) snaptail_<name>. Throws
/// std::invalid_argument for a label name Prometheus rejects; label values are escaped.
/// Allocates; never blocks; thread-safe (touches only its arguments).
inline void write_prometheus(std::string& out,
                             std::span<const PrometheusSeries<TailerStats>> tailers) {
    detail::write_families(out, detail::tailer_metrics, tailers);
}

/// The same for one tailer: `write_prometheus(out, tailer.stats(), {{"log", "orders"}})`.
inline void write_prometheus(std::string& out, const TailerStats& stats,
                             const PrometheusLabels& labels = {}) {
    const PrometheusSeries<TailerStats> one{stats, labels};
    write_prometheus(out, std::span<const PrometheusSeries<TailerStats>>(&one, 1));
}

/// SwapBuffers' counters (snaptail_swap_buffer_*), one sample per buffer, as above.
inline void write_prometheus(std::string& out,
                             std::span<const PrometheusSeries<SwapBufferStats>> buffers) {
    detail::write_families(out, detail::swap_buffer_metrics, buffers);
}

/// The same for one SwapBuffer.
inline void write_prometheus(std::string& out, const SwapBufferStats& stats,
                             const PrometheusLabels& labels = {}) {
    const PrometheusSeries<SwapBufferStats> one{stats, labels};
    write_prometheus(out, std::span<const PrometheusSeries<SwapBufferStats>>(&one, 1));
}

/// Replaces `path` with `content` atomically: readers (node_exporter's textfile collector) see
/// the old file or the new one, never a part. Writes ".<name>.tmp.<random>" in the same
/// directory (a name the collector, which reads *.prom, ignores) with O_EXCL | O_NOFOLLOW and
/// mode `mode`, so that a symlink planted there is never followed, then renames it over
/// `path`. No fsync: metrics need not survive a power loss. Blocks on the file system; throws
/// std::system_error naming the call and the file.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view content,
                                  unsigned mode = 0644) {
    detail::TemporaryFile temporary(
        (path.parent_path() / ("." + path.filename().string() + ".tmp.")).string(), mode);
    temporary.write(content);
    temporary.replace(path);
}

}  // namespace snaptail
