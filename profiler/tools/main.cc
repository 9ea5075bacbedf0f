#include <iostream>

#include "profiler/tools/profile_cli.h"

int main(int argc, char** argv) {
  return recsched::profiler::tools::run_profile_cli({argv + 1, argv + argc}, std::cout, std::cerr);
}
