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

#include "xdp_defs.h"

SEC("xdp")
int dr_ceiling(struct xdp_md *ctx)
{
    struct ethhdr *eth;
    struct iphdr *ip;
    struct tcphdr *tcp = tcp4_headers(ctx, &eth, &ip);

    if (!tcp || ip->daddr != __builtin_bswap32(VIP) || tcp->dest != __builtin_bswap16(PORT))
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
