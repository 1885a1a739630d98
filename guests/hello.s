# hello.s — the smallest useful guest: bind a console, write one line, halt.
#
# It shows the whole split-driver dance of docs/guest-abi.md: CONNECT a ring page
# to a device, put a request in the ring, bump req_prod, NOTIFY the backend,
# and WAIT until rsp_prod catches up.

.equ CONSOLE_PORT, 1

.text
_start:
    li   a0, 0                  # device kind 0: console
    la   a1, console_ring
    li   a2, CONSOLE_PORT
    li   a7, 3                  # CONNECT
    ecall
    bnez a0, fail

    la   a0, console_ring
    li   a1, 0                  # op 0: write
    la   a2, message
    li   a3, message_end - message
    li   a4, 0
    call submit
    la   a0, console_ring
    li   a1, CONSOLE_PORT
    call kick                   # a0 = bytes written
    blez a0, fail

    li   a0, 0
    li   a7, 0                  # HALT, exit code 0
    ecall
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

# kick(a0 = ring, a1 = port): notify the backend, wait for every response;
# returns the status of the last one.
kick:
    mv   t3, a0
    mv   a0, a1
    li   a7, 1                  # NOTIFY
    ecall
1:  lw   t0, 0(t3)              # req_prod
    lw   t1, 8(t3)              # rsp_prod
    beq  t0, t1, 2f
    li   a7, 2                  # WAIT: sleep until a port is raised
    ecall
    j    1b
2:  addi t0, t0, -1
    andi t0, t0, 63
    slli t0, t0, 5
    add  t0, t0, t3
    lw   a0, 0x44(t0)           # status of the last response
    ret

.data
message:
    .ascii "Hello from a Kemari guest!\n"
message_end:

.balign 4096
console_ring:
    .space 4096
