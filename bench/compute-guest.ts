/** The compute-bound guests the mode comparison and the regions bench share. */
import { CONSOLE_START } from "../test/helpers/guests.ts";

/** A compute-bound guest: 200 M instructions, a console line every ≈ 33 M (6 events). */
export const COMPUTE = `${CONSOLE_START}    li   s0, 6
outer:
    li   s1, 8333333
1:  addi s2, s2, 7
    xor  s3, s3, s2
    addi s1, s1, -1
    bnez s1, 1b
    la   t3, ring
    lw   t0, 0(t3)
    andi t1, t0, 63
    slli t1, t1, 5
    add  t1, t1, t3
    sw   t0, 0x40(t1)
    sw   zero, 0x44(t1)
    la   t2, dot
    sw   t2, 0x48(t1)
    li   t2, 1
    sw   t2, 0x4c(t1)
    addi t0, t0, 1
    sw   t0, 0(t3)
    li   a0, CONSOLE_PORT
    li   a7, 1
    ecall
# wait for the line
2:  lw   t0, 0(t3)
    lw   t1, 8(t3)
    beq  t0, t1, 3f
    li   a7, 2
    ecall
    j    2b
# computed on
3:  addi s0, s0, -1
    bnez s0, outer
    li   a0, 0
    li   a7, 0
    ecall
.data
dot: .ascii "."
.align 12
ring: .space 4096
`;

/**
 * The same, writing its progress lines the way an OS's console driver does:
 * post the line, notify, compute on; the completions are collected at the
 * end. The guest above waits for each line's completion, so every line costs
 * it a round trip in Kemari whatever the tap does.
 */
export const COMPUTE_ASYNC = COMPUTE.slice(0, COMPUTE.indexOf("# wait for the line")) + COMPUTE.slice(COMPUTE.indexOf("# computed on")).replace(
  "    li   a0, 0\n    li   a7, 0\n    ecall",
  "    la   t3, ring\n4:  lw   t0, 0(t3)\n    lw   t1, 8(t3)\n    beq  t0, t1, 5f\n    li   a7, 2\n    ecall\n    j    4b\n5:  li   a0, 0\n    li   a7, 0\n    ecall",
);
