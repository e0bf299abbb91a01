// Catching up on a backlog with several threads: a stretch of the file is read in pieces, each
// by one thread that also finds the line ends of its piece while the bytes are in its cache.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include <unistd.h>

namespace snaptail::detail {

/// One piece of a range read: where it goes, what came back, and where its lines end.
struct ReadPiece {
    char* dst{nullptr};
    std::uint64_t offset{0};  // file offset of dst[0]
    std::size_t size{0};      // bytes asked for
    long got{0};              // bytes read (fewer at the end of the file), or -1: see error
    int error{0};
    // One entry per '\n' in dst[0, got): its index shifted left by one, the low bit set when
    // the byte before it (in this piece) is '\r'. Recycled between reads.
    std::vector<std::uint32_t> ends;
};

/// Reads `piece` with pread and records its line ends. Never throws: if the line ends cannot
/// be stored (out of memory), the piece is reported as read with nothing (got = 0), so the
/// caller reads those bytes again the ordinary way. No allocation once `ends` has grown.
inline void read_piece(int fd, ReadPiece& piece) noexcept {
    piece.ends.clear();
    piece.error = 0;
    ssize_t n = 0;
    do {
        n = ::pread(fd, piece.dst, piece.size, static_cast<off_t>(piece.offset));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        piece.got = -1;
        piece.error = errno;
        return;
    }
    piece.got = static_cast<long>(n);
    const char* const begin = piece.dst;
    const char* const end = begin + n;
    try {
        for (const char* p = begin; (p = static_cast<const char*>(
                                         std::memchr(p, '\n', static_cast<std::size_t>(end - p))));
             ++p) {
            const auto index = static_cast<std::uint32_t>(p - begin);
            const bool cr = p != begin && p[-1] == '\r';
            piece.ends.push_back(index << 1 | static_cast<std::uint32_t>(cr));
        }
    } catch (...) {
        piece.ends.clear();
        piece.got = 0;
    }
}

/// A stretch of the file split into pieces that threads take one at a time.
struct RangeRead {
    int fd{-1};
    std::vector<ReadPiece> pieces;           // in file order; recycled
    std::size_t count{0};                    // pieces in use
    std::atomic<std::size_t> next_piece{0};  // the next piece a thread may take
    std::atomic<std::size_t> pending{0};     // pieces not read yet
    std::size_t active{0};                   // workers holding it (guarded by the pool's mutex)
    std::size_t accepted{0};                 // pieces taken as read (set by the reader)
    bool complete{false};                    // every piece was read whole

    /// Splits [offset, offset + size) of `fd`, to be read to `dst`, into pieces of at most
    /// `piece_bytes` (< 2 GiB, so that a line end's index fits its entry). Allocates only while
    /// the piece vector grows.
    void prepare(int file, char* dst, std::uint64_t offset, std::size_t size,
                 std::size_t piece_bytes) {
        fd = file;
        count = (size + piece_bytes - 1) / piece_bytes;
        if (pieces.size() < count) {
            pieces.resize(count);
        }
        for (std::size_t i = 0; i < count; ++i) {
            const std::size_t at = i * piece_bytes;
            auto& piece = pieces[i];
            piece.dst = dst + at;
            piece.offset = offset + at;
            piece.size = std::min(piece_bytes, size - at);
            piece.got = 0;
        }
        next_piece.store(0, std::memory_order_relaxed);
        pending.store(count, std::memory_order_relaxed);
    }

    /// After every piece was read: takes the pieces up to the first short one as read, since a
    /// piece after a short one may hold bytes written after the gap was read (the file grew
    /// between the two reads), and those are read again later, after the gap's. A failed piece
    /// ends them before it. Sets `accepted` and `complete`; returns the bytes taken.
    std::size_t accept() noexcept {
        std::size_t bytes = 0;
        accepted = 0;
        complete = false;
        for (; accepted < count; ++accepted) {
            const auto& piece = pieces[accepted];
            if (piece.got < 0) {
                return bytes;
            }
            bytes += static_cast<std::size_t>(piece.got);
            if (static_cast<std::size_t>(piece.got) < piece.size) {
                ++accepted;
                return bytes;
            }
        }
        complete = count != 0;
        return bytes;
    }

    /// Reads the next untaken piece, if any; false when none is left. Sets `last` when the
    /// piece it read was the last one pending. Any thread; never throws.
    bool take_piece(bool& last) noexcept {
        const std::size_t i = next_piece.fetch_add(1, std::memory_order_relaxed);
        if (i >= count) {
            return false;
        }
        read_piece(fd, pieces[i]);
        last = pending.fetch_sub(1, std::memory_order_acq_rel) == 1;
        return true;
    }
};

}  // namespace snaptail::detail
