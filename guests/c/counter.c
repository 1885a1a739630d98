/*
 * counter.c — the counter service of guests/counter.s, in C.
 *
 * Request packet (8 bytes, little-endian): u32 client (0..63), u32 seq.
 * Reply packet (12 bytes): u32 client, u32 seq, u32 counter after the request.
 * A client numbers its requests 1, 2, 3, ... and retries until answered; the
 * service counts a seq it has not seen from that client once and answers a
 * repeat with the value it gave the first time: exactly once. Every increment
 * is logged to disk (sector 1 + (n-1) mod 2047: u32 counter, client, seq)
 * before it is answered.
 */
#include "../sdk/kemari.h"

enum { CONSOLE_PORT = 1, RX_PORT = 2, TX_PORT = 3, BLK_PORT = 4 };
enum { MAX_CLIENTS = 64, LOG_SECTORS = 2047 };

static struct ring console_ring, rx_ring, tx_ring, blk_ring;
static u32 last_seq[MAX_CLIENTS];
static u32 last_value[MAX_CLIENTS];
static u32 counter;
static u8 request_buf[64];
static u32 reply[3];
static u32 record[SECTOR_SIZE / 4];

static void print(const char *s) {
  request(&console_ring, CONSOLE_PORT, OP_WRITE, s, strlen_(s), 0);
}

int main(void) {
  if (connect(DEV_CONSOLE, &console_ring, CONSOLE_PORT) || connect(DEV_NET_RX, &rx_ring, RX_PORT) ||
      connect(DEV_NET_TX, &tx_ring, TX_PORT) || connect(DEV_BLK, &blk_ring, BLK_PORT))
    return 1;
  print("counter (C) ready\n");
  for (;;) {
    i32 len = request(&rx_ring, RX_PORT, OP_POST, request_buf, sizeof request_buf, 0);
    if (len < 8) continue; /* not a request */
    u32 client = ((u32 *)request_buf)[0];
    u32 seq = ((u32 *)request_buf)[1];
    if (client >= MAX_CLIENTS) continue;
    if (seq > last_seq[client]) {
      counter++;
      last_seq[client] = seq;
      last_value[client] = counter;
      record[0] = counter;
      record[1] = client;
      record[2] = seq;
      if (request(&blk_ring, BLK_PORT, OP_BLK_WRITE, record, SECTOR_SIZE, 1 + (counter - 1) % LOG_SECTORS) < 0) return 2;
    }
    reply[0] = client;
    reply[1] = seq;
    reply[2] = last_value[client];
    request(&tx_ring, TX_PORT, OP_SEND, reply, sizeof reply, 0);
  }
}
