# counter.s — a counter service that logs to disk.
#
# Request packet (8 bytes, little-endian): u32 client (0..63), u32 seq.
# Reply packet (12 bytes): u32 client, u32 seq, u32 counter after the request.
# A client numbers its requests 1, 2, 3, ... and retries until answered; the
# service increments only for a seq it has not seen from that client and
# answers a repeat with the value it gave the first time: exactly once.
# Every increment is logged before it is answered: sector 1 + (n-1) mod 2047
# of the disk holds { u32 counter, u32 client, u32 seq }.

.equ CONSOLE_PORT, 1
.equ RX_PORT, 2
.equ TX_PORT, 3
.equ BLK_PORT, 4
.equ MAX_CLIENTS, 64
.equ LOG_SECTORS, 2047

.text
_start:
    li   a0, 0                  # console
    la   a1, console_ring
    li   a2, CONSOLE_PORT
    call connect
    li   a0, 2                  # net-rx
    la   a1, rx_ring
    li   a2, RX_PORT
    call connect
    li   a0, 1                  # net-tx
    la   a1, tx_ring
    li   a2, TX_PORT
    call connect
    li   a0, 3                  # blk
    la   a1, blk_ring
    li   a2, BLK_PORT
    call connect

    la   a0, console_ring
    li   a1, 0
    la   a2, banner
    li   a3, banner_end - banner
    li   a4, 0
    call submit
    la   a0, console_ring
    li   a1, CONSOLE_PORT
    call kick

serve:
    la   a0, rx_ring
    li   a1, 0
    la   a2, request
    li   a3, 64
    li   a4, 0
    call submit
    la   a0, rx_ring
    li   a1, RX_PORT
    call kick                   # a0 = request length
    li   t0, 8
    blt  a0, t0, serve          # too short: not a request
    la   t0, request
    lw   s1, 0(t0)              # client
    lw   s2, 4(t0)              # seq
    li   t0, MAX_CLIENTS
    bgeu s1, t0, serve          # no such client
    slli t1, s1, 2
    la   t2, last_seq
    add  t2, t2, t1
    lw   t3, 0(t2)
    la   t5, last_value
    add  t5, t5, t1
    bgeu t3, s2, repeat         # seen this seq already: answer as before

    la   t4, counter            # a new request: count it...
    lw   s3, 0(t4)
    addi s3, s3, 1
    sw   s3, 0(t4)
    sw   s2, 0(t2)
    sw   s3, 0(t5)
    la   t0, record             # ...log it to disk...
    sw   s3, 0(t0)
    sw   s1, 4(t0)
    sw   s2, 8(t0)
    addi a4, s3, -1
    li   t0, LOG_SECTORS
    remu a4, a4, t0
    addi a4, a4, 1
    la   a0, blk_ring
    li   a1, 1                  # op 1: write
    la   a2, record
    li   a3, 512
    call submit
    la   a0, blk_ring
    li   a1, BLK_PORT
    call kick
    j    reply                  # ...and answer

repeat:
    lw   s3, 0(t5)
reply:
    la   t0, response
    sw   s1, 0(t0)
    sw   s2, 4(t0)
    sw   s3, 8(t0)
    la   a0, tx_ring
    li   a1, 0
    la   a2, response
    li   a3, 12
    li   a4, 0
    call submit
    la   a0, tx_ring
    li   a1, TX_PORT
    call kick
    j    serve

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
banner:     .ascii "counter service ready\n"
banner_end:
.balign 4
counter:    .word 0
last_seq:   .space MAX_CLIENTS * 4
last_value: .space MAX_CLIENTS * 4
request:    .space 64
response:   .space 12
.balign 512
record:     .space 512
.balign 4096
console_ring: .space 4096
rx_ring:      .space 4096
tx_ring:      .space 4096
blk_ring:     .space 4096
