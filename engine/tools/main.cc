#include <iostream>

#include "engine/tools/engine_cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return recsched::engine::tools::run_engine_cli(args, std::cout, std::cerr);
}
