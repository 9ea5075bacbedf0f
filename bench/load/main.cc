// recsched-load: an open-loop load generator for recschedd (see bench/load/client.h and
// docs/benchmarks.md; --help for the options).
#include <string>
#include <vector>

#include "bench/load/cli.h"

int main(int argc, char** argv) {
  return recsched::load::load_main(std::vector<std::string>(argv + 1, argv + argc));
}
