# journal.s — a guest that uses everything Kemari protects, with no input.
#
# Each of ROUNDS rounds dirties a page of memory, writes a journal record
# { round, sum } to disk sector `round`, reads it back and adds what it read
# to `sum`, and prints one letter to the console (a device event per step,
# so in mode kemari every round is several synchronisations). At the end it
# prints "\nok\n" and halts with exit code = sum = ROUNDS·(ROUNDS+1)/2.
# Deterministic: a run with failovers must end exactly like one without.

.equ ROUNDS, 40
.equ REGION, 16                 # pages dirtied round-robin
.equ CONSOLE_PORT, 1
.equ BLK_PORT, 4

.text
_start:
    li   a0, 0                  # console
    la   a1, console_ring
    li   a2, CONSOLE_PORT
    call connect
    li   a0, 3                  # blk
    la   a1, blk_ring
    li   a2, BLK_PORT
    call connect
    li   s0, 1                  # round
    li   s1, 0                  # sum

round:
    andi t0, s0, REGION - 1     # dirty page (round mod REGION) of the region
    slli t0, t0, 12
    la   t1, region
    add  t0, t0, t1
    sw   s0, 0(t0)
    sw   s1, 4(t0)

    la   t0, record             # write { round, sum } to sector `round`
    sw   s0, 0(t0)
    sw   s1, 4(t0)
    la   a0, blk_ring
    li   a1, 1
    la   a2, record
    li   a3, 512
    mv   a4, s0
    call submit
    la   a0, blk_ring
    li   a1, BLK_PORT
    call kick
    bltz a0, fail

    la   a0, blk_ring           # read it back into `readback`
    li   a1, 0
    la   a2, readback
    li   a3, 512
    mv   a4, s0
    call submit
    la   a0, blk_ring
    li   a1, BLK_PORT
    call kick
    bltz a0, fail
    la   t0, readback
    lw   t1, 0(t0)
    add  s1, s1, t1             # sum += round, as read from disk

    li   t0, 26                 # print the round's letter
    remu t0, s0, t0
    addi t0, t0, 'a'
    la   t1, letter
    sb   t0, 0(t1)
    la   a0, console_ring
    li   a1, 0
    la   a2, letter
    li   a3, 1
    li   a4, 0
    call submit
    la   a0, console_ring
    li   a1, CONSOLE_PORT
    call kick

    addi s0, s0, 1
    li   t0, ROUNDS
    ble  s0, t0, round

    la   a0, console_ring
    li   a1, 0
    la   a2, ok
    li   a3, ok_end - ok
    li   a4, 0
    call submit
    la   a0, console_ring
    li   a1, CONSOLE_PORT
    call kick
    mv   a0, s1
    li   a7, 0                  # HALT with the sum
    ecall

# connect(a0 = kind, a1 = ring, a2 = port): bind a device or halt with the error.
connect:
    li   a7, 3
    ecall
    bnez a0, fail
    ret
fail:
    li   a7, 0
    ecall

# submit(a0 = ring, a1 = op, a2 = addr, a3 = len, a4 = sector): queue one request.
submit:
    lw   t0, 0(a0)
    andi t1, t0, 63
    slli t1, t1, 5
    add  t1, t1, a0
    sw   t0, 0x40(t1)
    sw   a1, 0x44(t1)
    sw   a2, 0x48(t1)
    sw   a3, 0x4c(t1)
    sw   a4, 0x50(t1)
    addi t0, t0, 1
    sw   t0, 0(a0)
    ret

# kick(a0 = ring, a1 = port): notify, wait for every response, return the last status.
kick:
    mv   t3, a0
    mv   a0, a1
    li   a7, 1
    ecall
1:  lw   t0, 0(t3)
    lw   t1, 8(t3)
    beq  t0, t1, 2f
    li   a7, 2
    ecall
    j    1b
2:  addi t0, t0, -1
    andi t0, t0, 63
    slli t0, t0, 5
    add  t0, t0, t3
    lw   a0, 0x44(t0)
    ret

.data
ok:       .ascii "\nok\n"
ok_end:
letter:   .byte 0
.align 9
record:   .space 512
readback: .space 512
.align 12
console_ring: .space 4096
blk_ring:     .space 4096
region:       .space REGION * 4096
