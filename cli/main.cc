// recschedctl: see cli/recschedctl.h. The binary only gathers its environment.
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "cli/recschedctl.h"

int main(int argc, char** argv) {
  recsched::cli::Environment env;
  env.stdout_is_tty = ::isatty(STDOUT_FILENO) == 1;
  if (const char* v = std::getenv("NO_COLOR")) env.no_color = v;
  if (const char* v = std::getenv("RECSCHED_TOKEN")) env.token = v;
  std::ios::sync_with_stdio(false);
  return recsched::cli::run_recschedctl(std::vector<std::string>(argv + 1, argv + argc), std::cout,
                                        std::cerr, env);
}
