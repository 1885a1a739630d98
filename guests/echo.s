# echo.s — an echo server: every packet that arrives on net-rx is sent back
# on net-tx, byte for byte. One buffer, one request at a time, so the guest
# is deterministic: the n-th packet in is the n-th packet out (net-tx index n).

.equ RX_PORT, 2
.equ TX_PORT, 3

.text
_start:
    li   a0, 2                  # net-rx
    la   a1, rx_ring
    li   a2, RX_PORT
    li   a7, 3                  # CONNECT
    ecall
    bnez a0, fail
    li   a0, 1                  # net-tx
    la   a1, tx_ring
    li   a2, TX_PORT
    li   a7, 3
    ecall
    bnez a0, fail

serve:
    la   a0, rx_ring            # post the buffer and wait for a packet
    li   a1, 0
    la   a2, buffer
    li   a3, 4096
    li   a4, 0
    call submit
    la   a0, rx_ring
    li   a1, RX_PORT
    call kick                   # a0 = packet length
    blez a0, serve

    mv   a3, a0                 # send it back
    la   a0, tx_ring
    li   a1, 0
    la   a2, buffer
    li   a4, 0
    call submit
    la   a0, tx_ring
    li   a1, TX_PORT
    call kick
    j    serve

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
.balign 4096
rx_ring:  .space 4096
tx_ring:  .space 4096
buffer:   .space 4096
