// libFuzzer target: LineFramer, fed in pieces, must frame exactly like the plain model in
// framer_reference.hpp. Input layout:
//   byte 0     max_line_bytes = 1 + byte % 48
//   byte 1     bits 0-1: policy (0 truncate, 1 skip, 2 split, 3 split); bit 2: strip_cr
//   bytes 2-5  seed of the read boundaries (little endian)
//   the rest   the byte stream
// A mismatch prints the difference and aborts, which libFuzzer reports as a crash.
#include <snaptail/line_framer.hpp>
#include <snaptail/tail_options.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "framer_reference.hpp"

namespace {

constexpr std::size_t header_bytes = 6;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < header_bytes) {
        return 0;
    }
    const std::size_t max_line_bytes = 1 + data[0] % 48U;
    const unsigned mode = data[1];
    const auto policy = (mode & 3U) == 0   ? snaptail::LongLinePolicy::truncate
                        : (mode & 3U) == 1 ? snaptail::LongLinePolicy::skip
                                           : snaptail::LongLinePolicy::split;
    const bool strip_cr = (mode & 4U) != 0;
    const std::uint64_t split_seed = std::uint64_t{data[2]} | (std::uint64_t{data[3]} << 8U) |
                                     (std::uint64_t{data[4]} << 16U) |
                                     (std::uint64_t{data[5]} << 24U);
    const std::string_view input(reinterpret_cast<const char*>(data + header_bytes),
                                 size - header_bytes);

    const auto pieces = snaptail::test::random_pieces(input.size(), split_seed);
    const std::string mismatch =
        snaptail::test::compare_with_reference(input, pieces, max_line_bytes, policy, strip_cr);
    if (!mismatch.empty()) {
        std::fprintf(stderr,
                     "line_framer_fuzz: LineFramer differs from the reference\n"
                     "  max_line_bytes %zu, %s, strip_cr %d, %zu pieces (seed %llu)\n"
                     "  %s\n  input %s\n",
                     max_line_bytes, snaptail::test::policy_name(policy).c_str(), strip_cr ? 1 : 0,
                     pieces.size(), static_cast<unsigned long long>(split_seed), mismatch.c_str(),
                     snaptail::test::escape_bytes(input).c_str());
        std::abort();
    }
    return 0;
}
