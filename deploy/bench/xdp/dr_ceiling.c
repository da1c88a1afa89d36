// A stateless LVS-DR forwarder in XDP, for the lab bench only: the ceiling
// of what any DR director can reach in the bench's topology, with the
// director's work done in the veth's receive path and no thread to wake.
//
// It is not a load balancer: no connection table (the real server is picked
// by a hash of the client's address and port, which a weight change or a
// new real server would reshuffle), no health, no counters, TCP only. It
// forwards frames to the VIP's TCP port out of the interface they came in
// on, with the destination MAC of one of two real servers; everything else
// goes to the kernel (XDP_PASS), which answers ARP for the VIP.
//
// Built by lab-bench with clang -target bpf, the addresses given as macros:
// VIP (an IPv4 address as a host-order integer), PORT, OWN_MAC, RS1_MAC,
// RS2_MAC (each six comma-separated bytes).

// No system headers: the few kernel ABI definitions needed are spelled out,
// so the build needs clang alone.
#define SEC(name) __attribute__((section(name), used))
#define ETH_ALEN 6
#define ETH_P_IP 0x0800
#define IPPROTO_TCP 6
enum { XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX };

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

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

SEC("xdp")
int dr_ceiling(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = (void *)(eth + 1);
    struct tcphdr *tcp = (void *)(ip + 1);

    // The verifier needs each header's end checked against the frame's.
    if ((void *)(tcp + 1) > end)
        return XDP_PASS;
    if (eth->h_proto != __builtin_bswap16(ETH_P_IP) || ip->ihl != 5 ||
        ip->protocol != IPPROTO_TCP || ip->daddr != __builtin_bswap32(VIP) ||
        tcp->dest != __builtin_bswap16(PORT))
        return XDP_PASS;

    // Every segment of one connection goes to the same real server. The
    // top bit of a multiplicative hash: Linux picks even ephemeral ports
    // for connect(), so the port's low bit says nothing.
    u32 h = (ip->saddr ^ tcp->source) * 2654435761u;
    if (h >> 31)
        set_mac(eth->h_dest, RS2_MAC);
    else
        set_mac(eth->h_dest, RS1_MAC);
    set_mac(eth->h_source, OWN_MAC);
    return XDP_TX;
}

char _license[] SEC("license") = "GPL";
