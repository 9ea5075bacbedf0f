// A shared object without the entry point: recschedd must refuse it.
extern "C" int not_a_policy(void) { return 42; }
