// An XDP program that passes every frame, for the lab bench: a veth
// delivers XDP_TX or redirected frames (dr_ceiling.c, nat_ceiling.c) only to
// a peer that runs NAPI, which on a veth means an XDP program of its own (or
// GRO, which the bench turns off).

#include "xdp_defs.h"

SEC("xdp")
int pass(struct xdp_md *ctx)
{
    (void)ctx;
    return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
