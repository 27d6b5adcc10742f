#include <cstdio>
int main() { std::puts("coalesce: placeholder"); return 0; }
