/*
 * start.c — the entry point of a C guest. The machine starts at _start with
 * sp = the top of memory and every other register 0; memory is all zero, so
 * .bss needs no clearing. main's return value is the exit code.
 */
int main(void);

__attribute__((naked, noreturn, section(".text.start"))) void _start(void) {
  __asm__ volatile(
      "call main\n"      /* a0 = its exit code */
      "li a7, 0\n"       /* HALT */
      "ecall\n"
      "1: j 1b\n");
}
