/*
 * kemari.h — the guest machine's ABI v1 for C guests (docs/guest-abi.md).
 *
 * Hypercalls are ECALLs (number in a7); devices are Xen-style split drivers:
 * a ring is one 4 KiB page of guest memory holding 64 request/response slots,
 * the guest posts a request (submit), notifies the backend (kick), and waits
 * for its event channel (wait_events) until the backend has answered (rsp_prod
 * moved past the request; reclaim takes the answered slots back). The backend's own cursors are not guest state: after a
 * failover the new primary's backend rebuilds them from the ring, so a guest
 * written against this header survives its host dying without knowing it.
 *
 * Build: clang --target=riscv32 -march=rv32im, linked with guest.ld, started
 * by start.c — `npm run guests` (scripts/guests.mjs) has the flags.
 */
#ifndef KEMARI_H
#define KEMARI_H

typedef unsigned int u32;
typedef int i32;
typedef unsigned char u8;

enum { HC_HALT = 0, HC_NOTIFY = 1, HC_WAIT = 2, HC_CONNECT = 3, HC_POLL = 4, HC_TIME = 5, HC_RANDOM = 6 };
enum { DEV_CONSOLE = 0, DEV_NET_TX = 1, DEV_NET_RX = 2, DEV_BLK = 3 };
/* Request ops: console write, net-tx send, net-rx post, blk read are 0; blk write is 1. */
enum { OP_WRITE = 0, OP_SEND = 0, OP_POST = 0, OP_READ = 0, OP_BLK_WRITE = 1 };

#define RING_SLOTS 64
#define SECTOR_SIZE 512

/* A slot: the request as the guest writes it; the backend's response overwrites id and op (status). */
struct slot {
  volatile u32 id;
  volatile u32 op; /* response: i32 status (>= 0 bytes done, < 0 an error) */
  volatile u32 addr;
  volatile u32 len;
  volatile u32 sector;
  u32 reserved[3];
};

struct ring {
  volatile u32 req_prod;
  volatile u32 req_event;
  volatile u32 rsp_prod;
  volatile u32 rsp_event;
  u32 reserved[12];
  struct slot slot[RING_SLOTS];
} __attribute__((aligned(4096)));

static inline i32 hypercall(u32 nr, u32 a, u32 b, u32 c) {
  register u32 a0 __asm__("a0") = a;
  register u32 a1 __asm__("a1") = b;
  register u32 a2 __asm__("a2") = c;
  register u32 a7 __asm__("a7") = nr;
  __asm__ volatile("ecall" : "+r"(a0), "+r"(a1) : "r"(a2), "r"(a7) : "memory");
  return (i32)a0;
}

static inline __attribute__((noreturn)) void halt(i32 code) {
  hypercall(HC_HALT, (u32)code, 0, 0);
  for (;;) {
  }
}

/* Bind a device to a ring and an event-channel port (0 ok, < 0 an error). */
static inline i32 connect(u32 kind, struct ring *r, u32 port) {
  return hypercall(HC_CONNECT, kind, (u32)r, port);
}

/* Tell the backend on `port` that requests are waiting. */
static inline void kick(u32 port) {
  hypercall(HC_NOTIFY, port, 0, 0);
}

/* Block until an event channel fires; the bitmap of pending ports. */
static inline u32 wait_events(void) {
  return (u32)hypercall(HC_WAIT, 0, 0, 0);
}

/* Requests posted and not answered yet. */
static inline u32 ring_outstanding(const struct ring *r) {
  return r->req_prod - r->rsp_prod;
}

/* Post one request (the ring must have a free slot: ring_outstanding < 64); its index. */
static inline u32 submit(struct ring *r, u32 op, const void *addr, u32 len, u32 sector) {
  u32 n = r->req_prod;
  struct slot *s = &r->slot[n % RING_SLOTS];
  s->id = n;
  s->op = op;
  s->addr = (u32)addr;
  s->len = len;
  s->sector = sector;
  __asm__ volatile("" ::: "memory"); /* the slot is written before req_prod says so */
  r->req_prod = n + 1;
  return n;
}

/* Has request `n` been answered? (If so, what the backend wrote — the response, a received packet — is read only after.) */
static inline int answered(const struct ring *r, u32 n) {
  int done = (i32)(r->rsp_prod - n) > 0;
  __asm__ volatile("" ::: "memory");
  return done;
}

/*
 * Reclaim answered requests, as a driver that keeps its ring full does: the
 * responses from *seen up to rsp_prod (that many slots are free again); *seen
 * moves on. Their statuses are status_of(r, i) for i in the old *seen .. new.
 */
static inline u32 reclaim(const struct ring *r, u32 *seen) {
  u32 upto = r->rsp_prod;
  __asm__ volatile("" ::: "memory");
  u32 n = upto - *seen;
  *seen = upto;
  return n;
}

/* The status of answered request `n`. */
static inline i32 status_of(const struct ring *r, u32 n) {
  return (i32)r->slot[n % RING_SLOTS].op;
}

/* Post, notify, and wait for the answer: the simple, blocking way to use a device. */
static inline i32 request(struct ring *r, u32 port, u32 op, const void *addr, u32 len, u32 sector) {
  u32 n = submit(r, op, addr, len, sector);
  kick(port);
  while (!answered(r, n)) wait_events();
  return status_of(r, n);
}

static inline u32 strlen_(const char *s) {
  u32 n = 0;
  while (s[n]) n++;
  return n;
}

/* Memory helpers (no libc here). */
static inline void copy(void *dst, const void *src, u32 n) {
  u8 *d = (u8 *)dst;
  const u8 *s = (const u8 *)src;
  while (n--) *d++ = *s++;
}

static inline void fill(void *dst, u8 v, u32 n) {
  u8 *d = (u8 *)dst;
  while (n--) *d++ = v;
}

#endif
