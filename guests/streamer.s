# streamer.s — streams 512-byte packets the way a network driver does.
#
# It keeps the net-tx ring full: while fewer than 64 packets are in flight it
# puts the next one in the ring and NOTIFYs the backend, one NOTIFY per packet,
# like a driver that kicks its NIC for every packet (so in mode kemari every
# packet is a synchronisation). With all 64 slots in flight it WAITs, then
# reclaims every slot whose response has come back (up to rsp_prod) and
# reuses it. Each slot has its own buffer, so no buffer is rewritten before
# the packet in it has been sent. (A backend that answers every NOTIFY at
# once, as in mode none, keeps the ring nearly empty: then the guest never
# waits. The ring fills when the backend lags, e.g. while Kemari holds the
# events back for a synchronisation and the guest runs on.)
#
# Packet n (n = 0, 1, 2, ...) is 512 bytes: u32 n, little-endian, then byte i
# = i mod 256 for i = 4..511, so a receiver can check order and content.
# Deterministic: packet n always has these bytes and net-tx index n.

.equ PACKETS, 0                 # packets to send: 0 = forever (a stream); otherwise
                                # halt with exit code 0 once that many have completed
.equ PACKET_SIZE, 512           # bytes per packet; fixed: the code finds a slot's
                                # buffer with a shift by 9
.equ SLOTS, 64                  # ring slots: packets in flight at most
.equ TX_PORT, 3

.text
_start:
    li   a0, 1                  # device kind 1: net-tx
    la   a1, tx_ring
    li   a2, TX_PORT
    li   a7, 3                  # CONNECT
    ecall
    bnez a0, fail

    # Fill every slot's buffer with the fixed pattern once, a word at a time:
    # the word at offset i (i mod 4 = 0) holds bytes i, i+1, i+2, i+3 mod 256,
    # that is (i mod 256) * 0x01010101 + 0x03020100, with no carry between
    # bytes. The buffers start on a page, so i mod 256 is the address's low
    # byte. Only bytes 0..3 (the packet's number) change from packet to packet.
    la   t0, buffers
    li   t1, SLOTS * PACKET_SIZE
    add  t1, t1, t0
    li   t3, 0x01010101
    li   t4, 0x03020100
1:  andi t2, t0, 0xfc
    mul  t2, t2, t3
    add  t2, t2, t4
    sw   t2, 0(t0)
    addi t0, t0, 4
    bltu t0, t1, 1b

    la   s0, tx_ring
    li   s1, 0                  # the next packet's number (= its request index)
    li   s2, 0                  # responses reclaimed so far
    li   s3, PACKETS

stream:
    # Reclaim: every response up to rsp_prod frees its slot (and buffer).
    # A failed send ends the stream with its error as the exit code.
    lw   t0, 8(s0)              # rsp_prod
1:  beq  s2, t0, 2f
    andi t1, s2, SLOTS - 1
    slli t1, t1, 5
    add  t1, t1, s0
    lw   a0, 0x44(t1)           # status: bytes sent, or a negative errno
    bltz a0, fail
    addi s2, s2, 1
    j    1b

2:  beqz s3, 3f                 # PACKETS = 0: a stream without end
    bgeu s2, s3, done           # all PACKETS have completed
    bgeu s1, s3, wait           # all are posted: only completions are left
3:  sub  t1, s1, s2             # packets in flight (indices wrap; so does this)
    li   t2, SLOTS
    bgeu t1, t2, wait           # the ring is full

    andi t1, s1, SLOTS - 1      # slot s1 mod 64 has buffer s1 mod 64
    slli t1, t1, 9              # × PACKET_SIZE
    la   a2, buffers
    add  a2, a2, t1
    sw   s1, 0(a2)              # number the packet
    mv   a0, s0
    li   a1, 0                  # op 0: send
    li   a3, PACKET_SIZE
    li   a4, 0
    call submit
    li   a0, TX_PORT            # NOTIFY per packet, as soon as it is posted:
    li   a7, 1                  # the backend may send it while we post the next
    ecall
    addi s1, s1, 1
    j    stream

wait:
    # Sleep until the backend raises the port. A port raised by an earlier
    # completion (already reclaimed) makes WAIT return at once; the loop then
    # finds nothing new and waits again, so no completion is ever missed.
    li   a7, 2                  # WAIT
    ecall
    j    stream

done:
    li   a0, 0
    li   a7, 0                  # HALT, exit code 0
    ecall
fail:
    li   a7, 0                  # HALT with the error as exit code
    ecall

# submit(a0 = ring, a1 = op, a2 = addr, a3 = len, a4 = sector): queue one request.
submit:
    lw   t0, 0(a0)              # req_prod
    andi t1, t0, 63
    slli t1, t1, 5
    add  t1, t1, a0             # slot = ring + 32 * (req_prod mod 64)
    sw   t0, 0x40(t1)           # id: the request index
    sw   a1, 0x44(t1)
    sw   a2, 0x48(t1)
    sw   a3, 0x4c(t1)
    sw   a4, 0x50(t1)
    addi t0, t0, 1
    sw   t0, 0(a0)              # publish it: req_prod++
    ret

.data
.balign 4096
tx_ring:  .space 4096
buffers:  .space SLOTS * PACKET_SIZE
