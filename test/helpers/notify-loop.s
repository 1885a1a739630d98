# A guest that NOTIFYs its console for ever: an event every few instructions,
# so in kemari's every-event mode every few instructions a sync. Shared by the
# tests of bounded slices and steps and by `npm run test:responsive`.
.equ CONSOLE_PORT, 1
_start:
    li   a0, 0              # connect the console (device kind 0)
    la   a1, ring
    li   a2, CONSOLE_PORT
    li   a7, 3
    ecall
1:  li   a0, CONSOLE_PORT
    li   a7, 1              # NOTIFY
    ecall
    j    1b
.data
.align 12
ring: .space 4096
