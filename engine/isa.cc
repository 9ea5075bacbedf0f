#include "engine/isa.h"

#include <cstdlib>

namespace recsched::engine {

std::string_view to_string(Isa isa) {
  switch (isa) {
    case Isa::kGeneric:
      return "generic";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

std::optional<Isa> isa_from_string(std::string_view name) {
  if (name == "generic") return Isa::kGeneric;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  return std::nullopt;
}

static Isa hardware_isa() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kGeneric;
}

Isa detect_isa() {
  Isa isa = hardware_isa();
  if (const char* env = std::getenv("RECSCHED_ISA")) {
    if (auto requested = isa_from_string(env); requested && *requested < isa) isa = *requested;
  }
  return isa;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  const Isa top = hardware_isa();
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
    if (isa <= top) out.push_back(isa);
  }
  return out;
}

}  // namespace recsched::engine
