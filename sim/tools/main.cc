#include <iostream>

#include "sim/tools/sim_cli.h"

int main(int argc, char** argv) {
  return recsched::sim::tools::run_sim_cli({argv + 1, argv + argc}, std::cout, std::cerr);
}
