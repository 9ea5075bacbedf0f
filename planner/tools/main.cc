#include <iostream>

#include "planner/tools/plan_cli.h"

int main(int argc, char** argv) {
  return recsched::plan::tools::run_plan_cli({argv + 1, argv + argc}, std::cout, std::cerr);
}
