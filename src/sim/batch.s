# batch.s (simulator) — one block batch that reads a sector and then writes it.
# Each round queues [read sector 5 -> readback, write sector 5 <- round] and
# NOTIFYs once, then prints the letter of what it read: round r prints
# letter(r - 1). A takeover that re-ran the batch against a disk already
# holding the batch's own write would print letter(r) instead (bug 1).
.equ ROUNDS, 30
.equ CONSOLE_PORT, 1
.equ BLK_PORT, 4

.text
_start:
    li   a0, 0
    la   a1, console_ring
    li   a2, CONSOLE_PORT
    call connect
    li   a0, 3
    la   a1, blk_ring
    li   a2, BLK_PORT
    call connect
    li   s0, 1
round:
    la   t0, record
    sw   s0, 0(t0)
    la   a0, blk_ring
    li   a1, 0
    la   a2, readback
    li   a3, 512
    li   a4, 5
    call submit
    la   a0, blk_ring
    li   a1, 1
    la   a2, record
    li   a3, 512
    li   a4, 5
    call submit
    la   a0, blk_ring
    li   a1, BLK_PORT
    call kick
    bltz a0, fail
    la   t0, readback
    lw   t1, 0(t0)
    li   t0, 26
    remu t0, t1, t0
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
    li   a0, 0
    li   a7, 0
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
letter:   .byte 0
.align 9
record:   .space 512
readback: .space 512
.align 12
console_ring: .space 4096
blk_ring:     .space 4096
