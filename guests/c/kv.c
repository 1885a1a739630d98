/*
 * kv.c — a small key-value store that keeps its data on the disk.
 *
 * Requests are packets of text: "SET key value", "GET key", "DEL key".
 * Replies are packets: "OK", the value, or "NOTFOUND" (and "ERR ..." for a
 * request it cannot parse). Keys are at most 31 bytes, values 400. Each key
 * lives in one sector of the disk, found by hashing it (open addressing over
 * 1024 sectors from sector 8), written before the reply: the disk is the
 * store, so after a failover the new primary finds every acknowledged SET on
 * the replicated disk. It keeps nothing in memory between requests.
 */
#include "../sdk/kemari.h"

enum { CONSOLE_PORT = 1, RX_PORT = 2, TX_PORT = 3, BLK_PORT = 4 };
enum { FIRST_SECTOR = 8, BUCKETS = 1024, KEY_MAX = 31, VALUE_MAX = 400 };

/* A sector: u32 used (1 live, 2 deleted: probing goes on past it), key, value length, value. */
struct entry {
  u32 used;
  char key[KEY_MAX + 1];
  u32 len;
  char value[SECTOR_SIZE - 4 - (KEY_MAX + 1) - 4];
};

static struct ring console_ring, rx_ring, tx_ring, blk_ring;
static char packet[512];
static struct entry sector;

static void print(const char *s) {
  request(&console_ring, CONSOLE_PORT, OP_WRITE, s, strlen_(s), 0);
}

static void send(const char *s, u32 n) {
  request(&tx_ring, TX_PORT, OP_SEND, s, n, 0);
}

static void reply(const char *s) {
  send(s, strlen_(s));
}

static u32 hash(const char *key, u32 n) {
  u32 h = 2166136261u;
  for (u32 i = 0; i < n; i++) h = (h ^ (u8)key[i]) * 16777619u;
  return h;
}

static int same_key(const struct entry *e, const char *key, u32 n) {
  for (u32 i = 0; i < n; i++)
    if (e->key[i] != key[i]) return 0;
  return e->key[n] == 0;
}

static int read_sector(u32 s) {
  return request(&blk_ring, BLK_PORT, OP_READ, &sector, SECTOR_SIZE, s) >= 0;
}

static int write_sector(u32 s) {
  return request(&blk_ring, BLK_PORT, OP_BLK_WRITE, &sector, SECTOR_SIZE, s) >= 0;
}

/* The sector holding `key`, or (found = 0) the first free one on its probe path; 0: the table is full. */
static u32 find(const char *key, u32 n, int *found) {
  u32 h = hash(key, n);
  u32 free_at = 0;
  for (u32 i = 0; i < BUCKETS; i++) {
    u32 s = FIRST_SECTOR + (h + i) % BUCKETS;
    if (!read_sector(s)) return 0;
    if (sector.used == 1 && same_key(&sector, key, n)) {
      *found = 1;
      return s;
    }
    if (sector.used != 1 && free_at == 0) free_at = s;
    if (sector.used == 0) break; /* never used: the key is not further on */
  }
  *found = 0;
  return free_at;
}

/* The next space-separated word of packet[*at..end): its start and length. */
static u32 word(u32 *at, u32 end, u32 *len) {
  while (*at < end && packet[*at] == ' ') (*at)++;
  u32 start = *at;
  while (*at < end && packet[*at] != ' ') (*at)++;
  *len = *at - start;
  return start;
}

static void serve(u32 n) {
  u32 at = 0, klen, clen;
  u32 cmd = word(&at, n, &clen);
  u32 key = word(&at, n, &klen);
  if (klen == 0 || klen > KEY_MAX) return reply("ERR key: 1..31 bytes");
  int found;
  u32 s = find(packet + key, klen, &found);
  if (clen == 3 && packet[cmd] == 'G' && packet[cmd + 1] == 'E' && packet[cmd + 2] == 'T') {
    if (!found) return reply("NOTFOUND");
    return send(sector.value, sector.len);
  }
  if (clen == 3 && packet[cmd] == 'S' && packet[cmd + 1] == 'E' && packet[cmd + 2] == 'T') {
    if (at < n) at++; /* the one space before the value */
    u32 vlen = n - at;
    if (vlen == 0 || vlen > VALUE_MAX) return reply("ERR value: 1..400 bytes"); /* an empty reply packet could not be sent */
    if (s == 0) return reply("ERR full");
    fill(&sector, 0, sizeof sector);
    sector.used = 1;
    copy(sector.key, packet + key, klen);
    sector.len = vlen;
    copy(sector.value, packet + at, vlen);
    if (!write_sector(s)) return reply("ERR disk");
    return reply("OK");
  }
  if (clen == 3 && packet[cmd] == 'D' && packet[cmd + 1] == 'E' && packet[cmd + 2] == 'L') {
    if (!found) return reply("NOTFOUND");
    sector.used = 2;
    if (!write_sector(s)) return reply("ERR disk");
    return reply("OK");
  }
  reply("ERR commands: SET key value, GET key, DEL key");
}

int main(void) {
  if (connect(DEV_CONSOLE, &console_ring, CONSOLE_PORT) || connect(DEV_NET_RX, &rx_ring, RX_PORT) ||
      connect(DEV_NET_TX, &tx_ring, TX_PORT) || connect(DEV_BLK, &blk_ring, BLK_PORT))
    return 1;
  print("kv (C) ready: SET key value, GET key, DEL key\n");
  for (;;) {
    i32 n = request(&rx_ring, RX_PORT, OP_POST, packet, sizeof packet, 0);
    if (n > 0) serve((u32)n);
  }
}
