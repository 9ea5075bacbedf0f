// Run-time choice of SIMD kernels. Shipped binaries are built for baseline x86-64;
// kernels for wider ISAs carry target attributes and are picked once, at model
// construction, from what the CPU supports (as FBGEMM does). Standard library only.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace recsched::engine {

/// Instruction sets with kernels of their own, in increasing order of width.
enum class Isa { kGeneric, kAvx2, kAvx512 };

std::string_view to_string(Isa isa);
std::optional<Isa> isa_from_string(std::string_view name);

/// The widest ISA this CPU supports. The environment variable RECSCHED_ISA
/// (generic|avx2|avx512) lowers it, e.g. to compare kernels; it cannot raise it.
Isa detect_isa();
/// Every ISA this CPU can run, narrowest first (tests run each kernel on each).
std::vector<Isa> supported_isas();

}  // namespace recsched::engine
