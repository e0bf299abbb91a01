// Fuzzes the checkpoint parser: any text yields a position or an error, never both, never a
// crash; what it accepts is a whole checkpoint that survives a round trip.
#include <snaptail/position.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const snaptail::ParsedPosition parsed = snaptail::parse_position(text);
    if (parsed.position.has_value() == !parsed.error.empty()) {
        std::fprintf(stderr, "checkpoint_fuzz: position and error disagree (error '%s')\n",
                     parsed.error.c_str());
        std::abort();
    }
    if (!parsed.position) {
        return 0;
    }
    // Accepted: it must have been a whole checkpoint, and mean the same when written again.
    const auto& p = *parsed.position;
    const bool whole = text.starts_with("snaptail-checkpoint 1\n") && text.ends_with("\nend\n");
    const bool consistent = p.fingerprint.bytes <= snaptail::max_fingerprint_bytes &&
                            p.fingerprint.bytes <= p.offset && p.line <= p.offset;
    const snaptail::ParsedPosition again =
        snaptail::parse_position(snaptail::to_text(p, parsed.path));
    if (!whole || !consistent || !again.position || *again.position != p ||
        again.path != parsed.path) {
        std::fprintf(stderr, "checkpoint_fuzz: accepted text is not a faithful checkpoint\n");
        std::abort();
    }
    return 0;
}
