// A stateless LVS-NAT forwarder in XDP, for the lab bench only: the ceiling
// of what a NAT director can reach in the bench's two-NIC topology with its
// per-frame work done in the veths' receive path, as an XDP fast path for
// established flows would do it.
//
// It is not a load balancer: no connection table (the real server is picked
// by a hash of the client's address and port, and replies are recognised by
// their source alone), one client whose MAC it is given, no health, no
// counters, TCP only, no TTL decrement. Outside in: TCP to VIP:PORT gets a
// real server's address (IP and TCP checksums updated incrementally, RFC
// 1624) and MAC and is redirected out of the inside interface. Inside in:
// TCP from a real server's port 80 gets the VIP as its source and goes out
// of the outside interface to the client. Everything else goes to the
// kernel (XDP_PASS), which answers ARP for the VIP and the inside gateway.
//
// Built by lab-bench with clang -target bpf, the plan given as macros:
// VIP, RS1, RS2 (IPv4 addresses as host-order integers), PORT, RS_PORT,
// OUT_IF, IN_IF (ifindexes), OUT_MAC, IN_MAC, CLIENT_MAC, RS1_MAC, RS2_MAC
// (each six comma-separated bytes).

#include "xdp_defs.h"

// bpf_redirect: the frame leaves through another interface.
static long (*bpf_redirect)(u32 ifindex, u64 flags) = (void *)23;

// The one's-complement checksum `*sum` after a 32-bit word of what it
// covers changed from `from` to `to` (RFC 1624: HC' = ~(~HC + ~m + m')).
static inline __attribute__((always_inline)) void
csum_replace4(u16 *sum, u32 from, u32 to)
{
    u32 s = (u16)~*sum;
    s += (u16)~from + (u16)(~from >> 16);
    s += (u16)to + (u16)(to >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    *sum = (u16)~s;
}

SEC("xdp")
int nat_ceiling(struct xdp_md *ctx)
{
    struct ethhdr *eth;
    struct iphdr *ip;
    struct tcphdr *tcp = tcp4_headers(ctx, &eth, &ip);

    if (!tcp)
        return XDP_PASS;

    if (ctx->ingress_ifindex == OUT_IF) {
        if (ip->daddr != __builtin_bswap32(VIP) || tcp->dest != __builtin_bswap16(PORT))
            return XDP_PASS;
        u32 h = (ip->saddr ^ tcp->source) * 2654435761u;
        u32 rip = h >> 31 ? __builtin_bswap32(RS2) : __builtin_bswap32(RS1);
        if (h >> 31)
            set_mac(eth->h_dest, RS2_MAC);
        else
            set_mac(eth->h_dest, RS1_MAC);
        set_mac(eth->h_source, IN_MAC);
        csum_replace4(&ip->check, ip->daddr, rip);
        csum_replace4(&tcp->check, ip->daddr, rip);
        ip->daddr = rip;
        if (PORT != RS_PORT) {
            u32 from = tcp->dest, to = __builtin_bswap16(RS_PORT);
            csum_replace4(&tcp->check, from, to);
            tcp->dest = to;
        }
        return bpf_redirect(IN_IF, 0);
    }

    if (ctx->ingress_ifindex == IN_IF) {
        if ((ip->saddr != __builtin_bswap32(RS1) && ip->saddr != __builtin_bswap32(RS2)) ||
            tcp->source != __builtin_bswap16(RS_PORT))
            return XDP_PASS;
        u32 vip = __builtin_bswap32(VIP);
        csum_replace4(&ip->check, ip->saddr, vip);
        csum_replace4(&tcp->check, ip->saddr, vip);
        ip->saddr = vip;
        if (PORT != RS_PORT) {
            u32 from = tcp->source, to = __builtin_bswap16(PORT);
            csum_replace4(&tcp->check, from, to);
            tcp->source = to;
        }
        set_mac(eth->h_dest, CLIENT_MAC);
        set_mac(eth->h_source, OUT_MAC);
        return bpf_redirect(OUT_IF, 0);
    }
    return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
