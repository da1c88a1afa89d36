// What the bench's XDP programs share. No system headers: the few kernel
// ABI definitions needed are spelled out, so the build needs clang alone.

#pragma once

#define SEC(name) __attribute__((section(name), used))
#define ETH_ALEN 6
#define ETH_P_IP 0x0800
#define IPPROTO_TCP 6
enum { XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT };

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

struct xdp_md {
    u32 data;
    u32 data_end;
    u32 data_meta;
    u32 ingress_ifindex;
    u32 rx_queue_index;
    u32 egress_ifindex;
};

struct ethhdr {
    u8 h_dest[ETH_ALEN];
    u8 h_source[ETH_ALEN];
    u16 h_proto;
} __attribute__((packed));

struct iphdr {
    u8 ihl : 4, version : 4;
    u8 tos;
    u16 tot_len, id, frag_off;
    u8 ttl, protocol;
    u16 check;
    u32 saddr, daddr;
};

struct tcphdr {
    u16 source, dest;
    u32 seq, ack_seq;
    u16 flags, window, check, urg_ptr;
};

// Written byte by byte from immediates: no read-only data section, which
// would need a map of its own.
static inline __attribute__((always_inline)) void
set_mac(u8 *p, u8 a, u8 b, u8 c, u8 d, u8 e, u8 f)
{
    p[0] = a, p[1] = b, p[2] = c, p[3] = d, p[4] = e, p[5] = f;
}


// The TCP header of a frame that is Ethernet, IPv4 without options and TCP,
// with `*eth` and `*ip` set; NULL for any other frame. Every header's end is
// checked against the frame's, as the verifier demands.
static inline __attribute__((always_inline)) struct tcphdr *
tcp4_headers(struct xdp_md *ctx, struct ethhdr **eth, struct iphdr **ip)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *e = data;
    struct iphdr *i = (void *)(e + 1);
    struct tcphdr *t = (void *)(i + 1);

    if ((void *)(t + 1) > end)
        return 0;
    if (e->h_proto != __builtin_bswap16(ETH_P_IP) || i->ihl != 5 || i->protocol != IPPROTO_TCP)
        return 0;
    *eth = e;
    *ip = i;
    return t;
}
