# burst.s (simulator) — three console writes in flight at once, one NOTIFY each.
# Each round posts three requests (each with its own buffer, so none is reused
# before its response) and NOTIFYs after each, then waits for all three. A
# pipelined tap lets the guest run on (computing past a slice's end, where the
# checkpoint is taken) to the second and third while the first one's
# checkpoint is in flight: their requests are in the ring before that
# checkpoint lands, and must not reach the backend until their own does.
.equ ROUNDS, 20
.equ CONSOLE_PORT, 1

.text
_start:
    li   a0, 0
    la   a1, console_ring
    li   a2, CONSOLE_PORT
    li   a7, 3
    ecall
    bnez a0, fail
    li   s0, 0                  # round
round:
    li   s1, 0                  # request of the round
post:
    la   t0, bufs               # buffer s1: [letter of the round, digit of the request]
    slli t1, s1, 4
    add  s2, t0, t1
    li   t0, 26
    remu t0, s0, t0
    addi t0, t0, 'a'
    sb   t0, 0(s2)
    addi t0, s1, '0'
    sb   t0, 1(s2)
    la   a0, console_ring       # queue it
    lw   t0, 0(a0)
    andi t1, t0, 63
    slli t1, t1, 5
    add  t1, t1, a0
    sw   t0, 0x40(t1)
    sw   zero, 0x44(t1)
    sw   s2, 0x48(t1)
    li   t2, 2
    sw   t2, 0x4c(t1)
    sw   zero, 0x50(t1)
    addi t0, t0, 1
    sw   t0, 0(a0)
    li   a0, CONSOLE_PORT       # and notify, without waiting
    li   a7, 1
    ecall
    li   t0, 20000              # compute past a slice (the simulator's are 20 000
1:  addi t0, t0, -1             # instructions), so the next request is posted
    bnez t0, 1b                 # while this one's checkpoint is in flight
    addi s1, s1, 1
    li   t0, 3
    blt  s1, t0, post
wait:                           # all three answered?
    la   t3, console_ring
    lw   t0, 0(t3)
    lw   t1, 8(t3)
    beq  t0, t1, next
    li   a7, 2
    ecall
    j    wait
next:
    addi s0, s0, 1
    li   t0, ROUNDS
    blt  s0, t0, round
    li   a0, 0
    li   a7, 0
    ecall
fail:
    li   a7, 0
    ecall

.data
.align 4
bufs:     .space 48
.align 12
console_ring: .space 4096
