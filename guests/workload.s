# workload.s — a compute + console + disk + packet workload.
#
# Each of ROUNDS rounds hashes a buffer of WORDS words ITERATIONS times, then
# writes the round's record { u32 round, u32 sum } to disk sector round mod
# LOG_SECTORS, prints "round N sum XXXXXXXX\n" (N in decimal, the sum in hex)
# and sends the same record as an 8-byte packet: three device events and two
# outputs a round. With the defaults that is 750 events and 500 outputs, ~1.5
# million instructions a round and about 373 million in all: some 2.5 s of a
# host running 150 million instructions a second (mode none). Then it waits
# for every response and halts with exit code 0. Deterministic (no TIME, no
# RANDOM): every run, with or without failovers, prints, writes and sends the
# same.
#
# It drives its devices the way a driver does: it posts a request, NOTIFYs,
# and goes on computing; it reclaims responses (checking each status) only
# when it needs the slot, and each slot has its own buffer, so no buffer is
# rewritten while the backend may still read it. A device that answers late
# (Kemari holding an output back until its checkpoint is acknowledged) costs
# the guest nothing until a ring fills. WAIT_EACH = 1 makes every request a
# blocking call instead (wait for its response before going on), the way a
# program that treats each write as synchronous behaves: then every output
# costs the guest a whole synchronisation.
#
# The hash is FNV-1a over 32-bit words, and each word gets the hash added to
# it as it is read, so no two passes over the buffer are alike:
#   for each word w: h = (h ^ w) * 16777619; w = w + h
# h starts at 2166136261 and runs on across rounds; a round's sum is h at its end.
# The buffer starts as word i = i * 0x9e3779b9.

.equ ROUNDS, 250                # rounds before halting: 2 outputs (line, packet) each
.equ ITERATIONS, 830            # hash passes per round (>= 1): 7 instructions a
                                # word, ~1800 a pass with 256 words
.equ WORDS, 256                 # words in the hashed buffer (1 KiB)
.equ LOG_SECTORS, 256           # round r's record goes to sector r mod LOG_SECTORS
                                # (no more than the disk's sectors, default 2048)
.equ WAIT_EACH, 0              # 1: wait for each request's response before going on
.equ SLOTS, 64                  # ring slots: requests in flight per ring at most
.equ CONSOLE_PORT, 1
.equ TX_PORT, 3
.equ BLK_PORT, 4

.text
_start:
    li   a0, 0                  # console
    la   a1, console_ring
    li   a2, CONSOLE_PORT
    call connect
    li   a0, 1                  # net-tx
    la   a1, tx_ring
    li   a2, TX_PORT
    call connect
    li   a0, 3                  # blk
    la   a1, blk_ring
    li   a2, BLK_PORT
    call connect

    la   t0, data               # word i = i * 0x9e3779b9 (golden-ratio steps:
    li   t1, WORDS * 4          # no two words alike, no long runs of zeros)
    add  t1, t1, t0
    li   t2, 0
    li   t3, 0x9e3779b9
1:  sw   t2, 0(t0)
    add  t2, t2, t3
    addi t0, t0, 4
    bltu t0, t1, 1b

    li   s0, 0                  # round
    li   s1, 0x811c9dc5         # h: the FNV-1a offset basis

round:
    # Compute: ITERATIONS passes over the buffer, 7 instructions a word.
    li   s2, ITERATIONS
    li   t2, 0x01000193         # the FNV prime, 16777619
    la   t4, data
    li   t1, WORDS * 4
    add  t1, t1, t4             # end of the buffer
1:  mv   t0, t4
2:  lw   t3, 0(t0)
    xor  s1, s1, t3
    mul  s1, s1, t2
    add  t3, t3, s1             # fold h back into the word
    sw   t3, 0(t0)
    addi t0, t0, 4
    bne  t0, t1, 2b
    addi s2, s2, -1
    bnez s2, 1b

    # Disk: the record { round, sum } to sector round mod LOG_SECTORS, from
    # the buffer of its slot (512 bytes each).
    la   a0, blk_ring
    la   a1, blk_cons
    call make_room
    lw   t0, 0(a0)              # req_prod: this request's slot
    andi t0, t0, SLOTS - 1
    slli t0, t0, 9
    la   a2, records
    add  a2, a2, t0
    sw   s0, 0(a2)
    sw   s1, 4(a2)
    li   t0, LOG_SECTORS
    remu a4, s0, t0
    li   a1, 1                  # op 1: write
    li   a3, 512
    call submit
    la   a0, blk_ring
    li   a1, BLK_PORT
    la   a2, blk_cons
    call post

    # Console: "round N sum XXXXXXXX\n", built in its slot's line (32 bytes
    # each); a1 is the write cursor.
    la   a0, console_ring
    la   a1, console_cons
    call make_room
    lw   t0, 0(a0)
    andi t0, t0, SLOTS - 1
    slli t0, t0, 5
    la   s3, lines
    add  s3, s3, t0             # s3: the line's start
    mv   a1, s3
    la   a0, s_round
    li   a2, s_round_end - s_round
    call put_str
    mv   a0, s0
    call put_dec
    la   a0, s_sum
    li   a2, s_sum_end - s_sum
    call put_str
    mv   a0, s1
    call put_hex
    li   t0, '\n'
    sb   t0, 0(a1)
    addi a1, a1, 1
    mv   a2, s3
    sub  a3, a1, a2             # the line's length
    la   a0, console_ring
    li   a1, 0                  # op 0: write
    li   a4, 0
    call submit
    la   a0, console_ring
    li   a1, CONSOLE_PORT
    la   a2, console_cons
    call post

    # Network: the same record as an 8-byte packet, from its slot's buffer.
    la   a0, tx_ring
    la   a1, tx_cons
    call make_room
    lw   t0, 0(a0)
    andi t0, t0, SLOTS - 1
    slli t0, t0, 3
    la   a2, packets
    add  a2, a2, t0
    sw   s0, 0(a2)
    sw   s1, 4(a2)
    li   a1, 0                  # op 0: send
    li   a3, 8
    li   a4, 0
    call submit
    la   a0, tx_ring
    li   a1, TX_PORT
    la   a2, tx_cons
    call post

    addi s0, s0, 1
    li   t0, ROUNDS
    bltu s0, t0, round

    # Every response in (and every status checked) before halting.
    la   a0, blk_ring
    la   a1, blk_cons
    li   a2, 1
    call settle
    la   a0, console_ring
    la   a1, console_cons
    li   a2, 1
    call settle
    la   a0, tx_ring
    la   a1, tx_cons
    li   a2, 1
    call settle
    li   a0, 0
    li   a7, 0                  # HALT, exit code 0
    ecall

# connect(a0 = kind, a1 = ring, a2 = port): bind a device or halt with the error.
connect:
    li   a7, 3
    ecall
    bnez a0, fail
    ret
fail:
    li   a7, 0                  # HALT with the (negative) error as exit code
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

# post(a0 = ring, a1 = port, a2 = &cons): NOTIFY the backend of what was
# submitted; with WAIT_EACH, also wait for its response.
post:
    mv   t3, a0
    mv   a0, a1
    li   a7, 1                  # NOTIFY
    ecall
    bnez a0, fail
    li   t0, WAIT_EACH
    beqz t0, 1f
    mv   a0, t3
    mv   a1, a2
    li   a2, 1
    j    settle                 # tail call: settle returns to post's caller
1:  ret

# make_room(a0 = ring, a1 = &cons): return once a slot is free (fewer than
# SLOTS requests in flight). a0 is kept.
make_room:
    li   a2, SLOTS
    # fall through

# settle(a0 = ring, a1 = &cons, a2 = limit): reclaim responses, halting on a
# failed one, until fewer than `limit` requests are in flight (limit 1: all
# answered); WAIT while not. *cons counts the responses reclaimed. a0 is kept.
settle:
    mv   t3, a0
1:  lw   t0, 8(t3)              # rsp_prod
    lw   t1, 0(a1)              # cons
2:  beq  t1, t0, 3f
    andi t2, t1, SLOTS - 1
    slli t2, t2, 5
    add  t2, t2, t3
    lw   a0, 0x44(t2)           # the response's status: negative is an error
    bltz a0, fail
    addi t1, t1, 1
    j    2b
3:  sw   t1, 0(a1)
    lw   t0, 0(t3)              # req_prod
    sub  t0, t0, t1             # requests in flight
    mv   a0, t3
    bltu t0, a2, 4f
    li   a7, 2                  # WAIT: a response raises the port
    ecall
    j    1b
4:  ret

# put_str(a0 = string, a2 = length, a1 = cursor): copy it; a1 moves past it.
put_str:
    beqz a2, 2f
1:  lbu  t0, 0(a0)
    sb   t0, 0(a1)
    addi a0, a0, 1
    addi a1, a1, 1
    addi a2, a2, -1
    bnez a2, 1b
2:  ret

# put_dec(a0 = value, a1 = cursor): the value in decimal, no leading zeros;
# a1 moves past it. Counts the digits first, then writes them from the last.
put_dec:
    li   t2, 10
    mv   t0, a0
1:  addi a1, a1, 1              # one byte per digit (at least one: "0")
    divu t0, t0, t2
    bnez t0, 1b
    mv   t1, a1
2:  remu t0, a0, t2
    divu a0, a0, t2
    addi t0, t0, '0'
    addi t1, t1, -1
    sb   t0, 0(t1)
    bnez a0, 2b
    ret

# put_hex(a0 = value, a1 = cursor): the value as 8 lowercase hex digits; a1 moves past them.
put_hex:
    li   t1, 28                 # shift of the most significant digit
1:  srl  t0, a0, t1
    andi t0, t0, 15
    addi t0, t0, '0'
    li   t2, '9'
    ble  t0, t2, 2f
    addi t0, t0, 'a' - '9' - 1  # 10..15 → a..f
2:  sb   t0, 0(a1)
    addi a1, a1, 1
    addi t1, t1, -4
    bgez t1, 1b
    ret

.data
# The data on pages of their own: a store to a page that also holds code
# leaves the interpreter's fast path (it must drop the decoded instructions
# it overwrites), which made the hash loop about a quarter slower.
.balign 4096
s_round:  .ascii "round "
s_round_end:
s_sum:    .ascii " sum "
s_sum_end:
lines:    .space SLOTS * 32    # a console line per slot
packets:  .space SLOTS * 8     # a packet per slot
console_cons: .word 0           # responses reclaimed, per ring
tx_cons:  .word 0
blk_cons: .word 0
data:     .space WORDS * 4
.balign 512
records:  .space SLOTS * 512   # a disk record per slot
.balign 4096
console_ring: .space 4096
tx_ring:      .space 4096
blk_ring:     .space 4096
