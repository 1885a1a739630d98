# stress.s — a page-dirtying stress with a tunable rate.
#
# Each round stores to PAGES pages of a REGION-page area (walking through it
# round-robin), then writes "." to the console: one device event per round,
# so in mode kemari every synchronisation carries PAGES dirty pages. Tune the
# rate with the .equ lines below. Ends with "\ndone\n" and exit code 0.

.equ PAGES, 8                   # pages dirtied per round (per event)
.equ ROUNDS, 100                # rounds before halting
.equ REGION, 64                 # pages in the area being dirtied (>= PAGES)
.equ CONSOLE_PORT, 1

.text
_start:
    li   a0, 0
    la   a1, console_ring
    li   a2, CONSOLE_PORT
    li   a7, 3                  # CONNECT the console
    ecall
    bnez a0, fail
    li   s0, 0                  # round
    li   s4, 0                  # next page of the region to dirty

round:
    li   s1, PAGES
1:  slli t0, s4, 12
    la   t1, region
    add  t0, t0, t1
    sw   s0, 0(t0)              # one store dirties the whole page
    sw   s4, 4(t0)
    addi s4, s4, 1
    li   t2, REGION
    blt  s4, t2, 2f
    li   s4, 0
2:  addi s1, s1, -1
    bgtz s1, 1b

    la   a2, dot
    li   a3, 1
    call print
    addi s0, s0, 1
    li   t0, ROUNDS
    blt  s0, t0, round

    la   a2, done
    li   a3, done_end - done
    call print
    li   a0, 0
    li   a7, 0                  # HALT 0
    ecall
fail:
    li   a7, 0
    ecall

# print(a2 = addr, a3 = len): one console write, waiting for its response.
print:
    la   t3, console_ring
    lw   t0, 0(t3)
    andi t1, t0, 63
    slli t1, t1, 5
    add  t1, t1, t3
    sw   t0, 0x40(t1)
    sw   zero, 0x44(t1)
    sw   a2, 0x48(t1)
    sw   a3, 0x4c(t1)
    addi t0, t0, 1
    sw   t0, 0(t3)
    li   a0, CONSOLE_PORT
    li   a7, 1                  # NOTIFY
    ecall
1:  lw   t0, 0(t3)
    lw   t1, 8(t3)
    beq  t0, t1, 2f
    li   a7, 2                  # WAIT
    ecall
    j    1b
2:  ret

.data
dot:  .ascii "."
done: .ascii "\ndone\n"
done_end:
.balign 4096
console_ring: .space 4096
region:       .space REGION * 4096
